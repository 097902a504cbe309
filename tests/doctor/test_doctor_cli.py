"""`primus-bridge doctor`: runs anywhere, reports every check with a fix, exits 1 on a failure."""

import json
import subprocess
import sys

import pytest
import torch

from primus_bridge.doctor import main
from primus_bridge.doctor.pins import DEFAULT_VERSIONS_FILE

pytestmark = pytest.mark.slow

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without a GPU")


def run_json(capsys, *argv) -> tuple[int, dict]:
    code = main(["--json", *argv])
    return code, json.loads(capsys.readouterr().out)


def by_name(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


@needs_no_gpu
def test_json_on_a_machine_without_gpu_fails_on_the_gpu_check(capsys):
    code, report = run_json(capsys)
    gpu = by_name(report)["gpu"]
    assert code == 1 and report["ok"] is False
    assert gpu["status"] == "fail" and "no GPU" in gpu["detail"] and gpu["fix"]
    assert report["summary"]["fail"] >= 1
    assert all(c["fix"] for c in report["checks"] if c["status"] in ("warn", "fail"))


def test_paths_come_from_the_config_flags(capsys, tmp_path, repo):
    data = repo / "examples" / "data" / "alpaca_sample.jsonl"
    _, report = run_json(capsys, "--data_path", str(data), "--save", str(tmp_path / "ckpt"),
                         "--hf_model_name_or_path", str(tmp_path / "missing-model"), "--load", str(tmp_path))
    checks = by_name(report)
    assert checks["data"]["status"] == "pass" and "1 file(s)" in checks["data"]["detail"]
    assert checks["checkpoint-disk"]["status"] in ("pass", "warn") \
        and str(tmp_path) in checks["checkpoint-disk"]["detail"]
    assert checks["hf-model"]["status"] == "fail"
    assert checks["load"]["status"] == "fail" and "latest_checkpointed_iteration.txt" in checks["load"]["detail"]


def test_paths_from_a_yaml_config(capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"data:\n  data_path: {tmp_path / 'nowhere.jsonl'}\n")
    _, report = run_json(capsys, "--config", str(config))
    data = by_name(report)["data"]
    assert data["status"] == "fail" and "nowhere.jsonl does not exist" in data["detail"]


def test_versions_are_compared_with_the_checkouts_pins(capsys):
    _, report = run_json(capsys)
    checks = by_name(report)
    assert checks["versions"]["status"] == "pass" and str(DEFAULT_VERSIONS_FILE) in checks["versions"]["detail"]
    assert checks["megatron-core"]["detail"].startswith("0.19.2 (pinned 0.19.2)")


def test_missing_versions_file_is_a_warning_not_a_crash(capsys, tmp_path):
    _, report = run_json(capsys, "--versions", str(tmp_path / "none.env"))
    assert by_name(report)["versions"]["status"] == "warn"


def test_malformed_versions_file_fails_naming_the_line(capsys, tmp_path):
    bad = tmp_path / "versions.env"
    bad.write_text("# pins\nROCM_VERSION = 7.15\n")
    code, report = run_json(capsys, "--versions", str(bad))
    check = by_name(report)["versions"]
    assert code == 1 and check["status"] == "fail" and f"{bad}:2:" in check["detail"]


def test_inside_an_image_of_another_platform_fails(capsys, monkeypatch):
    monkeypatch.setenv("PRIMUS_BRIDGE_IMAGE", "rocm" if torch.version.cuda else "cuda")
    code, report = run_json(capsys)
    assert code == 1 and by_name(report)["image"]["status"] == "fail"


def test_config_error_exits_2(capsys, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("training:\n  lr: [1]\n")
    assert main(["--config", str(config)]) == 2
    assert "training.lr" in capsys.readouterr().err


def test_text_report_has_one_line_per_check_and_the_fixes(capsys):
    main([])
    out = capsys.readouterr().out
    assert out.startswith("primus-bridge doctor (")
    assert any(line.startswith(("PASS", "WARN", "FAIL", "SKIP")) and " gpu " in line for line in out.splitlines())
    assert "fix: " in out


@needs_no_gpu
def test_the_installed_command_prints_pure_json(repo):
    # doctor imports Megatron-Bridge to check the compat registry: minutes on a loaded 2-core machine
    result = subprocess.run([sys.executable, "-m", "primus_bridge", "doctor", "--json"], cwd=repo,
                            capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["ok"] is False
    assert by_name(report)["gpu"]["status"] == "fail"
