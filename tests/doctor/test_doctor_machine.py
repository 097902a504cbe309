"""GPU inventory, RCCL/NCCL environment, /dev/shm and checkpoint disk checks."""

import os

import pytest
import torch

from primus_bridge.doctor.environment import environment_checks
from primus_bridge.doctor.gpus import describe, gpu_checks, model_checks
from primus_bridge.doctor.report import Check, Status, to_json, to_text
from primus_bridge.doctor.storage import checkpoint_disk_check, shm_check

GIB = 1024**3


def test_cpu_torch_is_no_gpu():
    [check] = gpu_checks("cpu")
    assert check.status is Status.FAIL and "CPU-only build" in check.detail and "make image-" in check.fix


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without a GPU")
def test_gpu_build_without_a_visible_gpu_says_which_variable_hides_them():
    [check] = gpu_checks("cuda", environ={"CUDA_VISIBLE_DEVICES": ""})
    assert check.status is Status.FAIL and "CUDA_VISIBLE_DEVICES is empty" in check.detail
    assert "--gpus all" in check.fix
    [rocm] = gpu_checks("rocm", environ={})
    assert "/dev/kfd" in rocm.fix


def test_inventory_groups_models_and_warns_on_mixes_and_unknown_types():
    eight = [("AMD Instinct MI300X", 192 * GIB)] * 8
    checks = model_checks(eight)
    assert [c.status for c in checks] == [Status.PASS] and checks[0].detail == "8 x AMD Instinct MI300X (192 GiB)"
    mixed = model_checks([("NVIDIA H100 80GB HBM3", 80 * GIB), ("NVIDIA A100-SXM4-80GB", 80 * GIB)])
    assert {c.name: c.status for c in mixed} == {"gpu": Status.PASS, "gpu-models": Status.WARN,
                                                 "gpu-type": Status.WARN}
    assert describe([("NVIDIA H200", 141 * GIB)] * 2) == "2 x NVIDIA H200 (141 GiB)"


def test_comm_environment_is_listed_and_harmful_settings_warn():
    environ = {"NCCL_DEBUG": "INFO", "NCCL_IB_DISABLE": "1", "NCCL_SOCKET_IFNAME": "eth0",
               "CUDA_DEVICE_MAX_CONNECTIONS": "1", "HOME": "/root"}
    checks = {c.name: c for c in environment_checks(environ)}
    assert checks["comm-env"].detail == "NCCL_DEBUG=INFO NCCL_IB_DISABLE=1 NCCL_SOCKET_IFNAME=eth0"
    assert checks["env NCCL_DEBUG"].status is Status.WARN and checks["env NCCL_IB_DISABLE"].status is Status.WARN
    assert "env CUDA_DEVICE_MAX_CONNECTIONS" not in checks


def test_megatron_needs_one_device_connection():
    [_, check] = environment_checks({"CUDA_DEVICE_MAX_CONNECTIONS": "8"})
    assert check.status is Status.WARN and "=8" in check.detail


def test_shm_size_thresholds(tmp_path):
    assert shm_check(tmp_path, minimum_gib=0, recommended_gib=0).status is Status.PASS
    assert shm_check(tmp_path, minimum_gib=0, recommended_gib=1e9).status is Status.WARN
    small = shm_check(tmp_path, minimum_gib=1e9)
    assert small.status is Status.FAIL and "--shm-size" in small.fix
    assert shm_check(tmp_path / "missing").status is Status.FAIL


def test_checkpoint_disk(tmp_path):
    assert checkpoint_disk_check(None).status is Status.WARN
    target = tmp_path / "not" / "yet" / "created"
    ok = checkpoint_disk_check(str(target), minimum_gib=0, recommended_gib=0)
    assert ok.status is Status.PASS and f"at {tmp_path} (for {target})" in ok.detail
    assert checkpoint_disk_check(str(target), minimum_gib=1e9).status is Status.FAIL
    assert checkpoint_disk_check(str(target), minimum_gib=0, recommended_gib=1e9).status is Status.WARN


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_checkpoint_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert checkpoint_disk_check(str(locked / "run")).status is Status.FAIL


def test_warn_and_fail_need_a_fix():
    with pytest.raises(ValueError, match="says no fix"):
        Check("x", Status.FAIL, "broken")
    Check("x", Status.PASS, "fine")


def test_report_renderings():
    checks = [Check("a", Status.PASS, "ok"), Check("b", Status.FAIL, "bad", "do this")]
    assert '"ok": false' in to_json(checks, "cpu")
    text = to_text(checks, "cpu").splitlines()
    assert text[2].startswith("FAIL  b  bad") and text[3].strip() == "fix: do this"
    assert text[-1] == "1 pass, 0 warn, 1 fail, 0 skip"
