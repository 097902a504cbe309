"""`primus-bridge launch --dry-run`: the torchrun command and environment for SLURM, Kubeflow and local runs."""

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from primus_bridge.launch import main

SCHEDULER_PREFIXES = ("SLURM_", "PET_", "MASTER_", "NCCL_", "GLOO_", "RCCL_", "HSA_", "HIP_", "TORCH_NCCL_",
                      "CUDA_DEVICE_MAX_CONNECTIONS")
SCHEDULER_NAMES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
TAIL = ["-m", "primus_bridge.train", "--config", "c.yaml"]


@pytest.fixture
def clean_env(monkeypatch):
    """No scheduler variables from the machine the tests run on; returns a setter."""
    for name in list(os.environ):
        if name.startswith(SCHEDULER_PREFIXES) or name in SCHEDULER_NAMES:
            monkeypatch.delenv(name)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))

    return set_env


@pytest.fixture
def slurm_conf(tmp_path, monkeypatch):
    """A slurm.conf for `scontrol show hostnames` (it parses the config but asks no daemon)."""
    if shutil.which("scontrol") is None:
        pytest.skip("scontrol is not on PATH (Debian package slurm-client; .ci/setup-slurm.sh installs it)")
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=dry\nSlurmctldHost=localhost\nNodeName=gpu-[001-004] CPUs=1\n"
                    "PartitionName=all Nodes=ALL Default=YES\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))


def dry_run(capsys, *flags: str) -> tuple[list[str], dict[str, str], str]:
    """(torchrun flags without the executable, exported variables, full output)."""
    code = main(["--dry-run", "--vendor", "none", *flags, "--", "train", "--config", "c.yaml"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    exports = dict(line.split("  #")[0].removeprefix("export ").split("=", 1) for line in lines
                   if line.startswith("export "))
    argv = shlex.split(lines[-1])
    assert os.path.basename(argv[0]) == "torchrun" or argv[1:3] == ["-m", "torch.distributed.run"]
    first_flag = next(i for i, arg in enumerate(argv) if arg.startswith("--nnodes="))
    return argv[first_flag:], exports, out


def expected(nnodes, nproc, endpoint, run_id, is_host):
    return [f"--nnodes={nnodes}", f"--nproc-per-node={nproc}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}", f"--rdzv-id={run_id}", f"--rdzv-conf=is_host={is_host}",
            "--max-restarts=0", "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1",
            "--shutdown-timeout=600", *TAIL]


def error_of(capsys, *flags: str) -> str:
    assert main(["--dry-run", "--vendor", "none", *flags, "--", "train"]) == 2
    return capsys.readouterr().err


def slurm_step(set_env, proc_id, **extra):
    values = {"SLURM_JOB_ID": 4321, "SLURM_PROCID": proc_id, "SLURM_NNODES": 4, "SLURM_NTASKS": 4,
              "SLURM_STEP_ID": 0, "SLURM_GPUS_ON_NODE": 8, "SLURM_JOB_NODELIST": "gpu-[001-004]"}
    set_env(**(values | extra))


def test_slurm_node_two_of_four(clean_env, slurm_conf, capsys):
    slurm_step(clean_env, 2)
    argv, _, out = dry_run(capsys)
    assert argv == expected(4, 8, "gpu-001:24321", 4321, "false")
    assert "first host of SLURM_JOB_NODELIST" in out


def test_slurm_first_node_hosts_the_rendezvous(clean_env, slurm_conf, capsys):
    slurm_step(clean_env, 0)
    argv, _, _ = dry_run(capsys)
    assert argv == expected(4, 8, "gpu-001:24321", 4321, "true")


def test_slurm_master_from_the_template_wins(clean_env, capsys):
    slurm_step(clean_env, 1, MASTER_ADDR="node17", MASTER_PORT=31000)
    argv, _, _ = dry_run(capsys)
    assert argv == expected(4, 8, "node17:31000", 4321, "false")


def test_slurm_batch_script_of_a_multi_node_job_is_refused(clean_env, capsys):
    clean_env(SLURM_JOB_ID=7, SLURM_PROCID=0, SLURM_NNODES=4, SLURM_JOB_NODELIST="gpu-[001-004]")
    assert "srun --ntasks-per-node=1" in error_of(capsys)


def test_slurm_one_task_per_gpu_is_refused(clean_env, capsys):
    slurm_step(clean_env, 0, SLURM_NTASKS=32, MASTER_ADDR="gpu-001")
    assert "SLURM_NTASKS=32 on 4 node(s)" in error_of(capsys)


def test_pytorchjob_worker(clean_env, capsys):
    clean_env(MASTER_ADDR="sft-master-0", MASTER_PORT=23456, WORLD_SIZE=16, RANK=1, PET_NNODES=2,
              PET_NODE_RANK=1, PET_NPROC_PER_NODE=8, PET_MASTER_ADDR="sft-master-0", PET_MASTER_PORT=23456)
    argv, _, out = dry_run(capsys)
    assert argv == expected(2, 8, "sft-master-0:23456", "sft-master-0", "false")
    assert "not passed to torchrun (read above instead): PET_MASTER_ADDR PET_MASTER_PORT PET_NNODES" in out


def test_pytorchjob_without_pet_variables(clean_env, capsys):
    clean_env(MASTER_ADDR="lora-master-0", MASTER_PORT=23456, WORLD_SIZE=8, RANK=0)
    argv, _, _ = dry_run(capsys, "--nproc-per-node", "4")
    assert argv == expected(2, 4, "lora-master-0:23456", "lora-master-0", "true")


def test_pytorchjob_elastic(clean_env, capsys):
    clean_env(MASTER_ADDR="e-master-0", MASTER_PORT=23456, RANK=0, PET_NNODES="1:4", PET_NPROC_PER_NODE=8,
              PET_RDZV_ENDPOINT="e-master-0:29400", PET_RDZV_ID="e-run", PET_RDZV_BACKEND="c10d")
    argv, _, _ = dry_run(capsys)
    assert argv == expected("1:4", 8, "e-master-0:29400", "e-run", "true")


def test_trainer_v2_jobset(clean_env, capsys):
    clean_env(PET_NNODES=2, PET_NODE_RANK=1, PET_NPROC_PER_NODE=4, PET_MASTER_ADDR="tj-node-0-0.tj",
              PET_MASTER_PORT=29400)
    argv, _, out = dry_run(capsys)
    assert argv == expected(2, 4, "tj-node-0-0.tj:29400", "tj-node-0-0.tj", "false")
    assert "# platform: trainer" in out


def test_local(clean_env, capsys):
    argv, _, _ = dry_run(capsys, "--nproc-per-node", "2")
    assert argv == expected(1, 2, "127.0.0.1:29500", "local", "true")
    clean_env(MASTER_PORT=29777)
    argv, _, _ = dry_run(capsys)
    assert argv == expected(1, 1, "127.0.0.1:29777", "local", "true")


@pytest.mark.parametrize("env, needle", [
    ({"MASTER_ADDR": "m", "MASTER_PORT": 1, "RANK": "one", "WORLD_SIZE": 2}, "RANK='one'"),
    ({"MASTER_ADDR": "m", "MASTER_PORT": 99999, "RANK": 0, "WORLD_SIZE": 2}, "MASTER_PORT=99999"),
    ({"MASTER_ADDR": "m", "RANK": 0, "WORLD_SIZE": 2}, "MASTER_PORT is not set"),
    ({"PET_NNODES": "4:2", "PET_NODE_RANK": 0, "PET_MASTER_ADDR": "m"}, "PET_NNODES='4:2'"),
    ({"MASTER_ADDR": "m", "MASTER_PORT": 1, "RANK": 0, "WORLD_SIZE": 3, "PET_NPROC_PER_NODE": 2},
     "WORLD_SIZE=3 is not a multiple of 2"),
])
def test_bad_scheduler_values_name_the_variable(clean_env, capsys, env, needle):
    clean_env(**env)
    assert needle in error_of(capsys)


def test_the_verb_is_required(clean_env, capsys):
    assert main(["--dry-run", "--", "--config", "c.yaml"]) == 2
    assert "launch -- train" in capsys.readouterr().err


def test_entrypoints(repo, clean_env):
    """`primus-bridge launch` and `python -m primus_bridge.launch` print the same plan."""
    clean_env(MASTER_ADDR="m-0", MASTER_PORT=23456, WORLD_SIZE=2, RANK=1, PET_NPROC_PER_NODE=1)
    flags = ["--dry-run", "--vendor", "none", "train", "--config", "c.yaml"]
    by_verb = subprocess.run([sys.executable, "-m", "primus_bridge", "launch", *flags], cwd=repo,
                             capture_output=True, text=True, timeout=120)
    by_module = subprocess.run([sys.executable, "-m", "primus_bridge.launch", *flags], cwd=repo,
                               capture_output=True, text=True, timeout=120)
    assert by_verb.returncode == 0, by_verb.stderr
    assert by_verb.stdout == by_module.stdout
    assert "--rdzv-endpoint=m-0:23456" in by_verb.stdout and "--nnodes=2" in by_verb.stdout


def test_environment_defaults_are_printed_and_yours_kept(clean_env, capsys):
    clean_env(NCCL_DEBUG="INFO")
    code = main(["--dry-run", "--vendor", "rocm", "--socket-ifname", "ens5", "train"])
    out = capsys.readouterr().out
    assert code == 0
    assert "export HSA_NO_SCRATCH_RECLAIM=1  # ROCm:" in out
    assert "export NCCL_DEBUG=INFO  # set by you" in out
    assert "export GLOO_SOCKET_IFNAME=ens5  # from --socket-ifname" in out
