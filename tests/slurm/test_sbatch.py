"""slurm/*.sbatch on a real one-node SLURM cluster: the job completes with its checkpoint and log, and a job
sent SIGUSR1 checkpoints, requeues itself and resumes."""

import subprocess
import time

import pytest
from slurm_jobs import REPO, submit

from primus_bridge.checkpoint import latest_iteration

pytestmark = [pytest.mark.usefixtures("slurm_cluster"), pytest.mark.slow]

DEMO = "examples/configs/demo_lora_cpu.yaml"
DATA = str(REPO / "examples" / "data" / "alpaca_sample.jsonl")
# A few fast steps of the tiny model: short sequences, one sample per step, no validation or export.
SMALL = ("--seq_length 64 --micro_batch_size 1 --global_batch_size 1 --set training.eval_iters=0 "
         "--set training.log_interval=1 --set convert_to_hf=false")


def node_idle() -> bool:
    state = subprocess.run(["sinfo", "-h", "-n", "localhost", "-o", "%t"], capture_output=True, text=True, timeout=60)
    return state.stdout.strip() == "idle"


def test_dry_run_job_gets_the_slurm_layout(tmp_path):
    job = submit("lora_llama8b.sbatch", tmp_path, CONFIG=DEMO, LAUNCH_ARGS="--dry-run --vendor none")
    job.wait_for(lambda: job.state() == "COMPLETED", "the dry-run job to complete", 120)
    log = job.log()
    port = 20000 + int(job.job_id) % 20000
    assert f"--nnodes=1 --nproc-per-node=1 --rdzv-backend=c10d --rdzv-endpoint=localhost:{port}" in log
    assert f"--rdzv-id={job.job_id} --rdzv-conf=is_host=true" in log
    assert f"-m primus_bridge.train --config {REPO / DEMO} --save {job.save_dir} --use_lora" in log


def test_lora_job_completes_with_checkpoint_and_log(tmp_path, tiny_model):
    job = submit("lora_llama8b.sbatch", tmp_path, CONFIG=DEMO, HF_MODEL=str(tiny_model), DATA_PATH=DATA,
                 TRAIN_ARGS=f"--train_iters 3 {SMALL}")
    job.wait_for(lambda: job.state() == "COMPLETED", "the LoRA job to complete", 300)
    assert latest_iteration(job.save_dir) == 3, job.describe()
    assert "step 3/3" in job.log()
    assert "finished with exit code 0" in job.output.read_text()
    assert "attempt 1" in (job.run_dir / "job.txt").read_text()


def test_usr1_checkpoints_requeues_and_resumes(tmp_path, tiny_model):
    steps = 600  # long enough (several seconds on idle cores) that the signal lands mid-run
    job = submit("lora_llama8b.sbatch", tmp_path, CONFIG=DEMO, HF_MODEL=str(tiny_model), DATA_PATH=DATA,
                 TRAIN_ARGS=f"--train_iters {steps} {SMALL} --set checkpointing.save_interval=1000")
    job.wait_for(lambda: f"step 2/{steps}" in job.log(), "training to start", 240)
    subprocess.run(["scancel", "--signal=USR1", job.job_id], check=True, timeout=60)
    job.wait_for(lambda: job.field("Restarts") == "1", "the job to requeue", 180)
    # Slurm holds a requeued job for about two minutes, so that the node has dropped the first run's job
    # credential (it refuses a new one issued in the same second). Once the node is idle, 2 s are enough.
    job.wait_for(node_idle, "the node to be idle after the requeue", 120)
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={job.job_id}", "StartTime=now"], check=True, timeout=60)
    job.wait_for(lambda: job.state() == "COMPLETED", "the requeued job to complete", 300)
    log, slurm_log = job.log(), job.output.read_text()
    saved_at = int(log.split("preemption: SIGUSR1 received")[1].split("checkpoint: step ")[1].split()[0])
    assert 2 <= saved_at < steps, log
    assert f"requeueing job {job.job_id}" in slurm_log
    assert f"holds a checkpoint at step {saved_at}; continuing from it" in log
    assert f"step {steps}/{steps}" in log
    assert latest_iteration(job.save_dir) == steps
    assert "attempt 2" in (job.run_dir / "job.txt").read_text()
