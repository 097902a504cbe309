"""`chat` on a GPU machine: from a Megatron checkpoint (exported through the megatron engine first), and with
the vLLM backend where vLLM is installed."""

import json
import subprocess
import sys

import pytest

from primus_bridge.models.tiny import build_tiny_llama

PROMPTS = ("--prompt", "How many minutes are in 3 hours?", "--prompt", "Capital of Norway?")


def _run(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def _answers(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.gpu
def test_chat_from_a_megatron_checkpoint_answers_as_its_hf_model(tmp_path, repo):
    hf = build_tiny_llama(repo / "examples/tokenizer", tmp_path / "hf")
    imported = _run("primus_bridge.convert", "--framework", "megatron_bridge", "--convert_from_hf",
                    "--hf_model_name_or_path", str(hf), "--save", str(tmp_path / "mcore"),
                    cwd=repo)
    assert imported.returncode == 0, imported.stderr[-3000:]
    from_checkpoint = _run("primus_bridge.chat.cli", "--model", str(tmp_path / "mcore"), *PROMPTS,
                           "--max_new_tokens", "8", "--dtype", "float32", cwd=repo)
    from_hf = _run("primus_bridge.chat.cli", "--model", str(hf), *PROMPTS, "--max_new_tokens", "8",
                   "--dtype", "float32", cwd=repo)
    assert "exporting the megatron checkpoint" in from_checkpoint.stderr
    assert "using the tokenizer's own chat_template" in from_checkpoint.stderr  # an import records no template
    assert _answers(from_checkpoint) == _answers(from_hf)


@pytest.mark.gpu
def test_vllm_backend_feeds_the_same_prompt_tokens(tmp_path, repo):
    pytest.importorskip("vllm")
    hf = build_tiny_llama(repo / "examples/tokenizer", tmp_path / "hf")
    common = ("--model", str(hf), "--template", "qwen2.5", *PROMPTS, "--max_new_tokens", "8", "--dtype", "float32")
    with_vllm = _answers(_run("primus_bridge.chat.cli", *common, "--backend", "vllm", cwd=repo))
    with_transformers = _answers(_run("primus_bridge.chat.cli", *common, cwd=repo))
    assert [a["prompt_tokens"] for a in with_vllm] == [a["prompt_tokens"] for a in with_transformers]
    assert all(0 < a["completion_tokens"] <= 8 and a["finish_reason"] in ("stop", "length") for a in with_vllm)
