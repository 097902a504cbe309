"""Submit the slurm/ templates to the local cluster and follow their jobs."""

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Job:
    job_id: str
    output: Path
    """SLURM's own log (--output)."""
    run_dir: Path
    """The template's per-job run folder (train.log, job.txt)."""
    save_dir: Path

    def field(self, name: str) -> str:
        done = subprocess.run(["scontrol", "-o", "show", "job", self.job_id], capture_output=True, text=True,
                              timeout=60)
        match = re.search(rf"\b{name}=(\S*)", done.stdout)
        return match.group(1) if match else ""

    def state(self) -> str:
        return self.field("JobState")

    def log(self) -> str:
        path = self.run_dir / "train.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def describe(self) -> str:
        slurm_log = self.output.read_text(errors="replace") if self.output.exists() else "(none)"
        return f"job {self.job_id} state {self.state()}\n--- {self.output}:\n{slurm_log[-6000:]}"

    def wait_for(self, condition, what: str, seconds: float) -> None:
        """Poll until `condition()` holds. The budget counts only time without progress: each new line in the
        training log (a step on a loaded machine may take ten times as long) starts it again, so a slow but
        moving job is followed to its end and a stuck one fails after `seconds`."""
        deadline, seen = time.time() + seconds, self.progress()
        while not condition():
            if self.state() in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                raise AssertionError(f"waiting for {what}:\n{self.describe()}")
            now_seen = self.progress()
            if now_seen != seen:
                deadline, seen = time.time() + seconds, now_seen
            if time.time() > deadline:
                subprocess.run(["scancel", self.job_id], timeout=60)
                raise AssertionError(f"no progress for {seconds:.0f} s waiting for {what}:\n{self.describe()}")
            time.sleep(0.5)

    def progress(self) -> tuple[int, int]:
        """How far the job has come: the sizes of its training log and of SLURM's log."""
        return tuple(path.stat().st_size if path.exists() else 0 for path in (self.run_dir / "train.log", self.output))


def submit(script: str, out_dir: Path, **overrides: str) -> Job:
    """`sbatch slurm/<script>` from the repo root, on the CPU, without a container, with env overrides."""
    env = dict(os.environ, CONTAINER_RUNTIME="none", GPU_TYPE="", RECIPE="", PYTHON=sys.executable,
               OUTPUT_DIR=str(out_dir), SBATCH_GPUS_PER_NODE="0", SBATCH_OUTPUT=str(out_dir / "slurm-%x-%j.out"),
               **overrides)
    done = subprocess.run(["sbatch", "--parsable", f"slurm/{script}"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip().split(";")[0]
    name = script.removesuffix(".sbatch").replace("_", "-")
    return Job(job_id, out_dir / f"slurm-{name}-{job_id}.out", out_dir / "runs" / f"{name}-{job_id}",
               Path(overrides.get("SAVE_DIR", out_dir / "checkpoints")))
