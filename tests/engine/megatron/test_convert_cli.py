"""`primus_bridge.convert`: HF -> Megatron checkpoint (import) -> HF (export), through the CLI, on the CPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from primus_bridge.checkpoint import read_export_marker

pytestmark = pytest.mark.slow


def _convert(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "primus_bridge.convert", "--framework", "megatron_bridge", *args],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def _weights(folder) -> dict:
    weights = {}
    for path in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(path))
    return weights


@pytest.mark.gpu
def test_import_then_export_round_trip(tmp_path, tokenizer_dir, repo):
    from primus_bridge.models.tiny import build_tiny_llama

    hf = build_tiny_llama(tokenizer_dir, tmp_path / "hf")
    imported = _convert("--convert_from_hf", "--hf_model_name_or_path", str(hf), "--save", str(tmp_path / "mcore"),
                        cwd=repo)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert list((tmp_path / "mcore").glob("iter_*/run_config.yaml"))

    exported = _convert("--load", str(tmp_path / "mcore"), "--convert_to_hf", "--hf_save_path", str(tmp_path / "out"),
                        cwd=repo)
    assert exported.returncode == 0, exported.stderr[-3000:]
    before, after = _weights(hf), _weights(tmp_path / "out")
    assert sorted(before) == sorted(after) and all(torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    generation = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    tokenizer_config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    eos_id = json.loads((tmp_path / "out" / "config.json").read_text())["eos_token_id"]
    assert generation["eos_token_id"] == eos_id and tokenizer_config.get("eos_token")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folders left behind"
    marker = read_export_marker(tmp_path / "out")  # made from Megatron-Bridge's own checkpoint: no marker of ours
    assert marker.engine == "megatron" and marker.template is None
    assert Path(marker.base_model).resolve() == hf.resolve(), "named by Megatron-Bridge's run_config.yaml"


def test_export_refuses_a_missing_checkpoint(tmp_path, repo):
    result = _convert("--load", str(tmp_path / "missing"), "--convert_to_hf", "--hf_save_path", str(tmp_path / "o"),
                      cwd=repo)
    assert result.returncode == 2 and "no such checkpoint folder" in result.stderr


def test_import_without_a_gpu_says_so(tmp_path, tokenizer_dir, repo):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    from primus_bridge.models.tiny import build_tiny_llama

    hf = build_tiny_llama(tokenizer_dir, tmp_path / "hf")
    result = _convert("--convert_from_hf", "--hf_model_name_or_path", str(hf),
                      "--save", str(tmp_path / "mcore"), cwd=repo)
    assert result.returncode == 2 and "needs a GPU here" in result.stderr
    assert not (tmp_path / "mcore").exists()
