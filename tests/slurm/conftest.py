"""A real one-node SLURM cluster on localhost, started by .ci/setup-slurm.sh."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / ".ci" / "setup-slurm.sh"


def _controller_answers() -> bool:
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return False
    done = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
    return "is UP" in done.stdout


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Skip unless a controller answers; as root, start the local cluster first (idempotent)."""
    if not _controller_answers() and os.geteuid() == 0:
        subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=600)
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch is not on PATH: run `bash .ci/setup-slurm.sh` as root (Debian slurm-wlm + munge)")
    if not _controller_answers():
        pytest.skip("the SLURM controller does not answer `scontrol ping`: run `bash .ci/setup-slurm.sh` as root")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny Llama the CPU demo fine-tunes (built once into the repo's .cache)."""
    from primus_bridge.models.tiny import DEFAULT_CACHE, ensure_tiny_llama

    folder, _ = ensure_tiny_llama(REPO / "examples" / "tokenizer", REPO / DEFAULT_CACHE)
    return folder
