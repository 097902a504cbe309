"""HF -> Megatron split over 2 processes (TP=2, then PP=2) -> HF through AutoBridge, on the CPU (gloo).

Each configuration runs `parallel_convert_worker.py` once under torchrun (2 ranks, 127.0.0.1): every rank
loads its shard of a tiny HF Llama, runs one forward pass and takes part in the export back to HF. The
tests compare the export with the original weights (bit-exact), the Megatron logits with the HF model's
(float32, 1e-4), and check from each rank's parameter shapes that the model really was split.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("parallel_convert_worker.py")
WORLD_SIZE = 2
WORKER_TIMEOUT_S = 300
LAUNCHER_VARIABLES = frozenset({"RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"})
"""Left out of the launcher's environment: an earlier one-process run in this pytest process may have set them."""
SPLITS = {"tp2": (2, 1), "pp2": (1, 2)}
"""name -> (tensor_model_parallel_size, pipeline_model_parallel_size)."""
VOCAB_MULTIPLE = 8
"""Megatron-Core splits the vocabulary evenly over the TP ranks, and Megatron-Bridge pads it only when
`should_pad_vocab` is set (its export then keeps the padded rows). Real checkpoints ship padded vocabularies;
the tiny model does the same (the project tokenizer alone has an odd size)."""


@dataclass(frozen=True)
class Converted:
    tp: int
    pp: int
    out: Path


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory, tokenizer_dir) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    vocab = -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf_llama")
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokens(hf_llama, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.pt"
    vocab = json.loads((hf_llama / "config.json").read_text())["vocab_size"]
    torch.save(torch.randint(0, vocab, (2, 40), generator=torch.Generator().manual_seed(3)), path)
    return path


def torchrun_worker(worker: Path, nproc: int, args: list[str], what: str) -> None:
    """`worker` under torchrun with `nproc` CPU processes (gloo), outside any launcher environment this pytest
    process may carry; the test fails with the worker's output when it does."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
               "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0", str(worker), *args]
    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}")


def _run_worker(hf: Path, tokens: Path, out: Path, tp: int, pp: int) -> None:
    torchrun_worker(WORKER, WORLD_SIZE, ["--hf", str(hf), "--tokens", str(tokens), "--out", str(out), "--tp", str(tp),
                                         "--pp", str(pp)], f"TP={tp} PP={pp} conversion")


@pytest.fixture(scope="module", params=sorted(SPLITS))
def converted(request, hf_llama, tokens, tmp_path_factory) -> Converted:
    tp, pp = SPLITS[request.param]
    out = tmp_path_factory.mktemp(request.param)
    _run_worker(hf_llama, tokens, out, tp, pp)
    return Converted(tp, pp, out)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    weights = {}
    for path in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(path))
    return weights


def _shards(converted: Converted, rank: int) -> dict[str, list[int]]:
    return json.loads((converted.out / f"shards_rank{rank}.json").read_text())


def test_round_trip_is_bit_exact(converted, hf_llama):
    before, after = _weights(hf_llama), _weights(converted.out / "hf")
    assert sorted(before) == sorted(after)
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_megatron_logits_equal_hf_logits(converted, hf_llama, tokens):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(hf_llama, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = hf(torch.load(tokens)).logits
    got = torch.load(converted.out / "logits.pt")
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_each_rank_holds_its_part_of_the_model(converted, hf_llama):
    full = _weights(hf_llama)
    vocab, hidden = full["model.embed_tokens.weight"].shape
    qkv_rows = full["model.layers.0.self_attn.q_proj.weight"].shape[0] + 2 * full[
        "model.layers.0.self_attn.k_proj.weight"].shape[0]
    ranks = [_shards(converted, rank) for rank in range(WORLD_SIZE)]
    if converted.tp == 2:
        for shard in ranks:
            assert shard["embedding.word_embeddings.weight"] == [vocab // 2, hidden]
            assert shard["output_layer.weight"] == [vocab // 2, hidden]
            assert shard["decoder.layers.1.self_attention.linear_qkv.weight"] == [qkv_rows // 2, hidden]
    else:
        first, last = ranks
        assert "embedding.word_embeddings.weight" in first and "output_layer.weight" not in first
        assert "output_layer.weight" in last and "embedding.word_embeddings.weight" not in last
        for shard in ranks:
            assert {name.split(".")[2] for name in shard if name.startswith("decoder.layers.")} == {"0"}
            assert shard["decoder.layers.0.self_attention.linear_qkv.weight"] == [qkv_rows, hidden]
