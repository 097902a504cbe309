"""The FLOP formula against numbers computed by hand for the Llama-3-8B shape."""

import pytest

import recipes
from primus_bridge.models.flops import attention_flops_per_token, flops_per_token, linear_params, lm_head_params, \
    lora_params
from primus_bridge.models.lora import PROJECTIONS, LoraSpec

LLAMA3_8B = recipes.recipe("llama3_8b").shape
ALL_LINEAR = frozenset(PROJECTIONS)

# Llama-3-8B: h=4096, L=32, 32 query heads of d=128, 8 KV heads, ffn 14336, V=128256.
Q = O_PROJ = 4096 * 4096             # 16,777,216
K = V_PROJ = 4096 * 1024             # 4,194,304
GATE = UP = DOWN = 4096 * 14336      # 58,720,256
PER_LAYER = Q + K + V_PROJ + O_PROJ + GATE + UP + DOWN
HAND_LINEAR = 32 * PER_LAYER         # 6,979,321,856
HAND_HEAD = 4096 * 128256            # 525,336,576
HAND_ATTENTION_4K = 6 * 32 * 4096 * 4096  # 6 * L * (n_q*d) * s = 3,221,225,472
HAND_LORA = 32 * 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)  # 41,943,040


def test_hand_numbers_are_what_the_comments_say():
    assert PER_LAYER == 218_103_808
    assert HAND_LINEAR == 6_979_321_856
    assert HAND_HEAD == 525_336_576
    assert HAND_ATTENTION_4K == 3_221_225_472
    assert HAND_LORA == 41_943_040


def test_llama3_8b_parameter_counts():
    assert linear_params(LLAMA3_8B) == HAND_LINEAR
    assert lm_head_params(LLAMA3_8B) == HAND_HEAD
    assert lora_params(LLAMA3_8B, LoraSpec(16, ALL_LINEAR)) == HAND_LORA


def test_llama3_8b_full_sft_flops_per_token_at_4k():
    expected = 6 * (HAND_LINEAR + HAND_HEAD) + HAND_ATTENTION_4K
    assert expected == 48_249_176_064
    assert flops_per_token(LLAMA3_8B, 4096) == expected


def test_llama3_8b_lora_uses_two_thirds_for_frozen_weights():
    expected = 4 * (HAND_LINEAR + HAND_HEAD) + 6 * HAND_LORA + HAND_ATTENTION_4K
    assert expected == 33_491_517_440
    assert flops_per_token(LLAMA3_8B, 4096, LoraSpec(16, ALL_LINEAR)) == expected


def test_attention_term_is_linear_in_sequence_length():
    assert attention_flops_per_token(LLAMA3_8B, 8192) == 2 * attention_flops_per_token(LLAMA3_8B, 4096)
    assert flops_per_token(LLAMA3_8B, 8192) - flops_per_token(LLAMA3_8B, 4096) == HAND_ATTENTION_4K


def test_tied_embeddings_still_count_the_lm_head():
    one_b = recipes.recipe("llama32_1b").shape
    assert one_b.tied_embeddings
    assert lm_head_params(one_b) == 2048 * 128256


def test_unknown_lora_target_is_an_error():
    with pytest.raises(ValueError, match="w1"):
        LoraSpec(16, frozenset({"q_proj", "w1"}))
