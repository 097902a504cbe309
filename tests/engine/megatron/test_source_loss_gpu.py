"""finetune() on a two-source mixture logs the validation loss of each source beside the total (GPU, tiny Llama).

Run on the GPU machine: `.venv/bin/python -m pytest tests/engine/megatron/test_source_loss_gpu.py -q`.
"""

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.gpu

HERE = Path(__file__).resolve().parent
EVAL_INTERVAL, TRAIN_ITERS = 2, 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _echo_records(folder: Path) -> Path:
    path = folder / "echo.jsonl"
    words = ["zebra", "cobalt", "lantern", "harbor"]
    path.write_text("".join(json.dumps({"instruction": f"Repeat the word {words[i % 4]}.", "input": "",
                                        "output": " ".join([words[i % 4]] * 12)}) + "\n" for i in range(40)))
    return path


def _values(hf: Path, work: Path, repo: Path) -> dict:
    return {
        "framework": "megatron_bridge", "engine": "megatron", "hf_model_name_or_path": str(hf),
        "convert_from_hf": True,
        "training": {"micro_batch_size": 2, "global_batch_size": 4, "train_iters": TRAIN_ITERS, "lr_warmup_iters": 0,
                     "eval_interval": EVAL_INTERVAL, "eval_iters": 2, "log_interval": 1,
                     "tensorboard_dir": str(work / "tensorboard")},
        "data": {"data_path": [{"path": str(repo / "examples/data/alpaca_sample.jsonl"), "name": "arith"},
                               {"path": str(_echo_records(work)), "name": "echo"}],
                 "seq_length": 256, "split": "70,30,0", "cache_dir": str(work / "data-cache")},
        "checkpointing": {"save": str(work / "run"), "save_interval": TRAIN_ITERS},
    }


def _scalars(folder: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: {event.step: event.value for event in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_finetune_logs_each_sources_validation_loss(tmp_path, tokenizer_dir, repo):
    from primus_bridge.models.tiny import build_tiny_llama

    hf = build_tiny_llama(tokenizer_dir, tmp_path / "tiny")
    config, result = tmp_path / "run.yaml", tmp_path / "result.json"
    config.write_text(yaml.safe_dump(_values(hf, tmp_path, repo)))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port",
               str(_free_port()), str(HERE / "finetune_driver.py"), "--config", str(config), "--result", str(result)]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    scalars = _scalars(tmp_path / "tensorboard")
    total = scalars["lm loss validation"]
    by_source = {name: scalars[f"lm loss/{name} validation"] for name in ("arith", "echo")}
    assert sorted(total) == list(range(EVAL_INTERVAL, TRAIN_ITERS + 1, EVAL_INTERVAL))
    for step, loss in total.items():
        values = [losses[step] for losses in by_source.values() if step in losses]
        assert values and all(math.isfinite(value) for value in values), (step, by_source)
        # the total is the token-weighted mean of the sources' values
        assert min(values) - 1e-4 <= loss <= max(values) + 1e-4, (step, loss, values)
