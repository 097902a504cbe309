"""Installed versions against pins: pass, warn outside an image, fail inside one; shadowed modules."""

import sys

import pytest

from primus_bridge.doctor.pins import torch_platform
from primus_bridge.doctor.report import Status
from primus_bridge.doctor.software import (LIBRARIES, Library, Pins, comm_library_check, import_error,
                                           installed_version, library_check, library_distribution, shadowing_path,
                                           software_checks)

MCORE = next(lib for lib in LIBRARIES if lib.name == "megatron-core")
TE = next(lib for lib in LIBRARIES if lib.name == "transformer-engine")


def test_matching_pin_passes():
    check = library_check(MCORE, Pins({"MEGATRON_CORE_VERSION": "0.19.2"}, "cuda", in_image=True), try_import=False)
    assert check.status is Status.PASS and check.detail == "0.19.2 (pinned 0.19.2)"


@pytest.mark.parametrize("in_image, status", [(False, Status.WARN), (True, Status.FAIL)])
def test_drift_warns_on_a_host_and_fails_in_an_image(in_image, status):
    check = library_check(MCORE, Pins({"MEGATRON_CORE_VERSION": "0.20.0"}, "rocm", in_image), try_import=False)
    assert check.status is status
    assert "0.19.2 installed; the image pins 0.20.0 (MEGATRON_CORE_VERSION in versions.env)" == check.detail
    assert "make image-rocm" in check.fix


@pytest.mark.skipif(installed_version("transformer-engine") is not None, reason="TE is installed here")
def test_pinned_library_that_is_missing():
    check = library_check(TE, Pins({"ROCM_TE_VERSION": "2.15.0"}, "rocm", in_image=True), try_import=False)
    assert check.status is Status.FAIL and check.detail.startswith("not installed; the image pins 2.15.0")
    assert library_check(TE, Pins({}, "rocm", in_image=True), try_import=False).status is Status.SKIP


def test_a_renamed_vendor_build_is_found_by_its_module():
    renamed = Library("six-vendor-build", "six", "SIX_VERSION")  # e.g. a ROCm TE wheel with its own name
    assert library_distribution(renamed) == "six"
    assert library_distribution(Library("megatron-x", "megatron.x", "X")) is None  # shared namespace: no guess


def test_shadowed_module_is_found(tmp_path, monkeypatch):
    (tmp_path / "six.py").write_text("# a checkout that would shadow the installed six\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.delitem(sys.modules, "six", raising=False)
    assert shadowing_path("six", "six") == str(tmp_path / "six.py")
    monkeypatch.setattr(sys, "path", sys.path[1:])
    assert shadowing_path("six", "six") is None


def test_import_error_says_why():
    assert import_error("json") is None
    assert import_error("no_such_module_anywhere").startswith("ModuleNotFoundError")


def test_comm_library_version_is_compared():
    platform = torch_platform()
    check = comm_library_check(Pins({}, platform, in_image=False))
    if platform == "cpu":
        assert check.status is Status.SKIP
        return
    found = check.detail.split(" ")[0]
    key = "ROCM_RCCL_VERSION" if platform == "rocm" else "CUDA_NCCL_VERSION"
    assert comm_library_check(Pins({key: found}, platform, False)).status is Status.PASS
    assert comm_library_check(Pins({key: "1.0.0"}, platform, True)).status is Status.FAIL


def test_software_checks_cover_python_torch_libraries_and_comm():
    names = [check.name for check in software_checks(Pins({}, torch_platform(), False), try_import=False)]
    assert names[:2] == ["python", "torch"]
    assert {lib.name for lib in LIBRARIES} <= set(names)
    assert names[-1] in ("rccl", "nccl", "rccl/nccl")
