"""The HF token never reaches the output, the logs, the saved config, the checkpoints, the report or the export."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

PLANTED_ENV = "hf_PlantedEnvToken0123456789"
PLANTED_FILE = "hf_PlantedFileToken9876543210"


def test_planted_token_appears_in_no_artifact_and_no_output(run_config, subprocess_tools, tmp_path):
    token_file = tmp_path / "secret" / "token"
    token_file.parent.mkdir()
    token_file.write_text(PLANTED_FILE + "\n")
    env = subprocess_tools["env"](HF_TOKEN=PLANTED_ENV, HF_TOKEN_FILE=str(token_file))
    run_dir = tmp_path / "run"
    config = run_config(run_dir, export=True, train_iters=2, eval_interval=1)
    trained = subprocess_tools["run"](config, env)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    converted = subprocess.run(
        [sys.executable, "-m", "primus_bridge.convert", "--load", str(run_dir / "checkpoints"), "--convert_to_hf",
         "--hf_save_path", str(run_dir / "converted")], cwd=subprocess_tools["repo"], env=env, capture_output=True,
        text=True, timeout=300)
    assert converted.returncode == 0, converted.stdout + converted.stderr

    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "run_config.yaml" for p in files) and any(p.name == "report.md" for p in files)
    assert any(p.parent.name == "adapter" for p in files) and (run_dir / "converted" / "config.json").is_file()
    for secret in (PLANTED_ENV, PLANTED_FILE):
        for output in (trained.stdout, trained.stderr, converted.stdout, converted.stderr):
            assert secret not in output
        leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert not leaked, f"token written to {leaked}"
