"""Random-weight checkpoints of a given shape: built, reloaded by transformers, and read back as the same shape."""

import dataclasses

import pytest

from primus_bridge.bench.build_model import build_key, build_random_llama, is_built
from primus_bridge.bench.shapes import shape_from_hf_config
from primus_bridge.bench.workspace import TOKENIZER_DIR
from primus_bridge.models.flops import flops_per_token
from primus_bridge.models.shape import ModelShape

MINI = ModelShape("llama", hidden_size=64, num_layers=2, num_attention_heads=4, num_query_groups=2,
                  ffn_hidden_size=160, vocab_size=8448, tied_embeddings=True, max_position_embeddings=512,
                  rope_theta=500000.0)


def test_built_model_loads_and_has_the_shape(tmp_path):
    from transformers import AutoModelForCausalLM

    out = build_random_llama(MINI, TOKENIZER_DIR, tmp_path / "mini", device="cpu", dtype="fp32")
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert model.get_input_embeddings().weight.shape == (8448, 64)
    read = shape_from_hf_config(out / "config.json")
    assert read == MINI
    assert flops_per_token(read, 256) == flops_per_token(MINI, 256)
    assert is_built(out, build_key(MINI, TOKENIZER_DIR, "fp32", 0))
    assert not is_built(out, build_key(MINI, TOKENIZER_DIR, "bf16", 0))


def test_vocabulary_smaller_than_the_tokenizer_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="more than the shape's vocabulary"):
        build_random_llama(dataclasses.replace(MINI, vocab_size=1000), TOKENIZER_DIR,
                           tmp_path / "small", device="cpu", dtype="fp32")
    assert not (tmp_path / "small").exists()
