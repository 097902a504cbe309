"""docker/import_check.py fails a build whose base is the wrong platform or drifted from the pins."""

import importlib.util
import re

from dockerfile_parsing import DOCKER

from primus_bridge.doctor.pins import torch_platform
from primus_bridge.doctor.report import Status

spec = importlib.util.spec_from_file_location("import_check", DOCKER / "import_check.py")
import_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_check)


def test_wrong_platform_fails_the_build(capsys):
    other = "cuda" if torch_platform() == "rocm" else "rocm"
    code = import_check.main(["--platform", other, "--versions", str(DOCKER / "versions.env")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"torch in the base image is a {torch_platform()} build, not {other}" in out
    assert re.search(r"PASS +import primus_bridge\.cli\.main +loads", out)


def test_modules_that_need_a_driver_are_not_imported_at_build_time():
    assert not set(import_check.RUNTIME_ONLY) & set(import_check.MODULES)
    assert "megatron.bridge" in import_check.RUNTIME_ONLY and "megatron.core" in import_check.MODULES


def test_import_failures_are_reported():
    ok, missing = import_check.import_checks(("json", "no_such_module_anywhere"))
    assert ok.status is Status.PASS and missing.status is Status.FAIL
    assert "ModuleNotFoundError" in missing.detail
