"""slurm/common.sh builds the right srun options and container command for each CONTAINER_RUNTIME."""

import os
import subprocess

import pytest
from slurm_jobs import REPO

SHOW = """
source slurm/common.sh
pb_defaults
pb_train_args
pb_container
printf '%s\\n' "${SRUN_OPTS[@]}"
echo ---
printf '%s\\n' "${WRAP[@]}"
echo ---
printf '%s\\n' "${TRAIN[@]}"
"""


def render(tmp_path, **overrides: str) -> tuple[list[str], list[str], list[str]]:
    """(srun options, container command prefix, trainer argv) as common.sh builds them inside a job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HF_"))}
    env |= {"SLURM_JOB_NAME": "lora-llama8b", "SLURM_JOB_ID": "77", "SLURM_SUBMIT_DIR": str(REPO),
            "CONFIG": "examples/configs/demo_lora_cpu.yaml", "RECIPE": "llama3_8b", "OUTPUT_DIR": str(tmp_path),
            "IMAGE": "reg/primus-bridge:test"} | overrides
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", SHOW], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    srun, wrap, train = done.stdout.split("---\n")
    return srun.split("\n")[:-1], [w for w in wrap.split("\n") if w], train.split("\n")[:-1]


def test_pyxis(tmp_path):
    srun, wrap, _ = render(tmp_path, CONTAINER_RUNTIME="pyxis", MOUNTS="/scratch:/scratch")
    assert wrap == []
    assert srun[:2] == ["--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--container-image=reg/primus-bridge:test" in srun
    (mounts,) = [o.split("=", 1)[1].split(",") for o in srun if o.startswith("--container-mounts=")]
    assert f"{REPO}:{REPO}" in mounts and f"{tmp_path}:{tmp_path}" in mounts and "/scratch:/scratch" in mounts
    assert f"--container-workdir={REPO}" in srun
    # A name that stays the same when the job is requeued (same job id): pyxis reuses the imported image.
    assert "--container-name=primus-bridge-77" in srun and "--container-writable" in srun


REMOVE = """
source slurm/common.sh
srun() { echo "srun $*" >>"$STEPS"; }
pb_defaults
pb_container
pb_remove_container
"""


@pytest.mark.parametrize("runtime", ["pyxis", "apptainer"])
def test_pyxis_container_is_removed_when_the_job_ends(tmp_path, runtime):
    """The step pb_main runs once the job is over for good (not on requeue); srun notes its arguments here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env |= {"SLURM_JOB_NAME": "j", "SLURM_JOB_ID": "77", "SLURM_SUBMIT_DIR": str(REPO), "OUTPUT_DIR": str(tmp_path),
            "CONFIG": "examples/configs/demo_lora_cpu.yaml", "CONTAINER_RUNTIME": runtime,
            "STEPS": str(tmp_path / "steps.txt")}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", REMOVE], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    steps = (tmp_path / "steps.txt").read_text().splitlines() if (tmp_path / "steps.txt").exists() else []
    if runtime == "pyxis":
        assert steps == ["srun --ntasks-per-node=1 enroot remove --force pyxis_primus-bridge-77"]
    else:
        assert steps == []


@pytest.mark.parametrize("gpu, flag", [("mi300x", "--rocm"), ("h200", "--nv")])
def test_apptainer(tmp_path, gpu, flag):
    _, wrap, train = render(tmp_path, CONTAINER_RUNTIME="apptainer", GPU_TYPE=gpu, IMAGE="/images/pb.sif")
    assert wrap[:3] == ["apptainer", "exec", flag] and wrap[-1] == "/images/pb.sif"
    assert train[train.index("--gpu") + 1] == gpu


def test_docker_passes_secrets_by_name(tmp_path):
    _, wrap, _ = render(tmp_path, CONTAINER_RUNTIME="docker", GPU_TYPE="mi325x", HF_TOKEN="hf_secret_value")
    assert wrap[:3] == ["docker", "run", "--rm"]
    assert {"--ipc=host", "--network=host", "--device=/dev/kfd", "--device=/dev/dri"} <= set(wrap)
    pairs = list(zip(wrap, wrap[1:]))
    assert ("--env", "HF_TOKEN") in pairs and ("--env", "SLURM_PROCID") in pairs and ("--env", "MASTER_ADDR") in pairs
    assert ("-v", f"{REPO}:{REPO}") in pairs
    assert not any("hf_secret_value" in part for part in wrap)
    assert wrap[-1] == "reg/primus-bridge:test"


def test_podman_nvidia(tmp_path):
    _, wrap, _ = render(tmp_path, CONTAINER_RUNTIME="podman", GPU_TYPE="b200")
    assert wrap[0] == "podman" and "--device=nvidia.com/gpu=all" in wrap


def test_trainer_arguments(tmp_path):
    _, _, train = render(tmp_path, CONTAINER_RUNTIME="none", GPU_TYPE="", DATA_PATH="/d/a.jsonl",
                         HF_MODEL="/m/llama", TRAIN_ARGS="--train_iters 7 --lr 1e-4")
    assert train == ["train", "--config", f"{REPO}/examples/configs/demo_lora_cpu.yaml", "--save",
                     f"{tmp_path}/checkpoints", "--recipe", "llama3_8b", "--data_path", "/d/a.jsonl",
                     "--convert_from_hf", "--hf_model_name_or_path", "/m/llama", "--train_iters", "7", "--lr", "1e-4"]


@pytest.mark.parametrize("overrides, needle", [
    ({"CONTAINER_RUNTIME": "singularity"}, "CONTAINER_RUNTIME=singularity: expected pyxis"),
    ({"GPU_TYPE": "a100"}, "GPU_TYPE=a100: expected one of"),
    ({"CONFIG": "missing.yaml"}, "missing.yaml does not exist"),
])
def test_bad_settings_are_named(tmp_path, overrides, needle):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env |= {"SLURM_JOB_NAME": "j", "SLURM_JOB_ID": "1", "SLURM_SUBMIT_DIR": str(REPO), "OUTPUT_DIR": str(tmp_path),
            "CONFIG": "examples/configs/demo_lora_cpu.yaml"} | overrides
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", SHOW], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and needle in done.stderr, done.stderr
