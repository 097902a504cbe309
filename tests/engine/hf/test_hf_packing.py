"""Packed rows: documents never attend across their boundaries, and the batch plan covers each sample once."""

from pathlib import Path

import pytest
import torch

from primus_bridge.engine.hf.attention_mask import packed_causal_mask, segment_ids
from primus_bridge.engine.hf.batches import BatchPlan
from primus_bridge.models.tiny import TinyLlamaSpec, build_tiny_llama

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    folder = build_tiny_llama(REPO / "examples/tokenizer", tmp_path_factory.mktemp("tiny"), TinyLlamaSpec())
    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa").eval()


def test_mask_is_block_diagonal_causal():
    cu_seqlens = torch.tensor([0, 2, 5, 6, 10, 12])
    mask = packed_causal_mask(cu_seqlens, 2, 6, torch.float32, torch.device("cpu"))
    allowed = (mask[0, 0] == 0).int()
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1]])
    assert torch.equal(allowed, expected)
    assert torch.equal((mask[1, 0] == 0).int(), torch.block_diag(torch.ones(4, 4), torch.ones(2, 2)).tril().int())
    with pytest.raises(ValueError, match="expected 0..12"):
        segment_ids(torch.tensor([0, 2, 5]), 2, 6)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_document_logits_equal_the_document_alone(tiny_model, attn):
    tiny_model.config._attn_implementation = attn
    torch.manual_seed(0)
    first, second = torch.randint(10, 1000, (7,)), torch.randint(10, 1000, (5,))
    packed = torch.cat([first, second])[None]
    positions = torch.cat([torch.arange(7), torch.arange(5)])[None]
    mask = packed_causal_mask(torch.tensor([0, 7, 12]), 1, 12, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        together = tiny_model(input_ids=packed, position_ids=positions, attention_mask=mask).logits[0]
        alone = tiny_model(input_ids=second[None]).logits[0]
        unmasked = tiny_model(input_ids=packed).logits[0]
    torch.testing.assert_close(together[7:], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked[7:], alone, atol=1e-3)


def test_batch_plan_gives_each_rank_its_slice_of_the_global_batch():
    plan = BatchPlan(global_batch=8, micro_batch=2, world_size=2)
    indices = list(range(100, 108))
    assert plan.accumulation_steps == 2
    assert plan.micro_batches(indices, 0) == [[100, 101], [102, 103]]
    assert plan.micro_batches(indices, 1) == [[104, 105], [106, 107]]
