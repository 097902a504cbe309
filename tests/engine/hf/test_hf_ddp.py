"""Two processes under torchrun (DDP over gloo on CPU) train exactly like one process with the same global batch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from primus_bridge.engine import get_engine

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


def test_two_processes_match_one(make_config, tmp_path):
    single = get_engine("hf").train(make_config(run_dir=tmp_path / "one", train_iters=3, eval_interval=3))
    cfg = make_config(run_dir=tmp_path / "two", train_iters=3, eval_interval=3, micro_batch_size=1)
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "primus_bridge.train", "--config", str(config)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 process(es) on cpu" in done.stdout
    result = json.loads((tmp_path / "two" / "checkpoints" / "train_result.json").read_text())
    assert result["extra"]["world_size"] == 2
    assert result["losses"] == pytest.approx(single.losses, rel=1e-5)
    assert result["extra"]["eval_losses"]["3"] == pytest.approx(single.extra["eval_losses"]["3"], rel=1e-5)
