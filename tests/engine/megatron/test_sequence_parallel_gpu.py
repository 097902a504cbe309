"""finetune() at TP=2 with sequence parallel on the local layer spec, on 2 GPUs: the losses of the TP=1 run.

The CPU test (test_sequence_parallel.py) checks the model's forward and backward under sequence parallel; this
runs the whole training step on GPUs: NCCL collectives, FlexAttention on packed streams, Megatron-Core's
`finalize_model_grads` and the optimizer. Both runs start from the same small Llama-shaped HF model (random
weights) with the same data, seed and batches, in float32, so TP changes only the order of sums.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (TP=2)")]

HERE = Path(__file__).resolve().parent
STEPS = 8
RUN_TIMEOUT_S = 600
VOCAB_MULTIPLE = 8
"""TP splits the vocabulary evenly; the project tokenizer alone has an odd size (see test_convert_parallel_cpu)."""


@pytest.fixture(scope="module")
def llama(tmp_path_factory, tokenizer_dir) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    config = LlamaConfig(vocab_size=-(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE, hidden_size=256,
                         intermediate_size=688, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                         max_position_embeddings=1024, rope_theta=500000.0, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _values(model: Path, work: Path, tp: int) -> dict:
    return {
        "engine": "megatron", "convert_from_hf": True, "hf_model_name_or_path": str(model),
        "model": {"transformer_impl": "local"},
        "parallelism": {"tensor_model_parallel_size": tp, "sequence_parallel": tp > 1},
        "training": {"micro_batch_size": 2, "global_batch_size": 4, "train_iters": STEPS, "lr": 1.0e-4,
                     "min_lr": 1.0e-5, "lr_warmup_iters": 2, "log_interval": 1},
        "precision": {"bf16": False},
        "data": {"data_path": "examples/data/alpaca_sample.jsonl", "dataset_format": "alpaca",
                 "prompt_template": "alpaca", "seq_length": 512, "split": "100,0,0",
                 "cache_dir": str(work / "data-cache")},
        "checkpointing": {"save": str(work / f"tp{tp}"), "save_interval": STEPS},
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train(model: Path, work: Path, repo: Path, tp: int) -> dict:
    import yaml

    config, result = work / f"tp{tp}.yaml", work / f"tp{tp}.result.json"
    config.write_text(yaml.safe_dump(_values(model, work, tp)))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(tp), "--master-port",
               str(_free_port()), str(HERE / "finetune_driver.py"), "--config", str(config), "--result", str(result)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(tp)))}
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, f"TP={tp} run failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return json.loads(result.read_text())


def test_tp2_sequence_parallel_losses_equal_tp1(llama, tmp_path, repo):
    tp1 = _train(llama, tmp_path, repo, tp=1)
    tp2 = _train(llama, tmp_path, repo, tp=2)
    assert tp1["steps_done"] == tp2["steps_done"] == STEPS
    torch.testing.assert_close(torch.tensor(tp2["losses"]), torch.tensor(tp1["losses"]), rtol=1e-4, atol=0)
    assert tp1["losses"][-1] < tp1["losses"][0]
