"""Two launchers with PyTorchJob environments (2 "nodes" x 1 process, gloo on 127.0.0.1) rendezvous and train."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from primus_bridge.checkpoint import latest_iteration

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STEPS = 3


def node_env(rank: int, port: int) -> dict[str, str]:
    """What the Kubeflow training operator sets in pod `rank` of a 2-pod PyTorchJob with nprocPerNode 1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PET_"))}
    return env | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2", "RANK": str(rank),
                  "PET_NNODES": "2", "PET_NODE_RANK": str(rank), "PET_NPROC_PER_NODE": "1",
                  "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port), "PYTHONUNBUFFERED": "1"}


def test_two_pytorchjob_nodes_train_together(tmp_path, free_port, tiny_model):
    save = tmp_path / "checkpoints"
    train = ["train", "--config", "examples/configs/demo_lora_cpu.yaml", "--hf_model_name_or_path", str(tiny_model),
             "--save", str(save), "--train_iters", str(STEPS), "--seq_length", "64", "--micro_batch_size", "1",
             "--global_batch_size", "2", "--set", "training.eval_iters=0", "--set", "training.log_interval=1",
             "--set", "convert_to_hf=false"]
    nodes = [subprocess.Popen([sys.executable, "-m", "primus_bridge.launch", "--", *train], cwd=REPO,
                              env=node_env(rank, free_port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for rank in (0, 1)]
    outputs = []
    for node in nodes:
        try:
            outputs.append(node.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            raise
    for rank, (node, output) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f"node {rank}:\n{output[-5000:]}"
    assert "--nnodes=2 --nproc-per-node=1" in outputs[0] and "is_host=true" in outputs[0]
    assert "is_host=false" in outputs[1]
    assert "2 process(es) on cpu" in outputs[0] + outputs[1]
    assert f"step {STEPS}/{STEPS}" in outputs[0] + outputs[1]
    assert latest_iteration(save) == STEPS
