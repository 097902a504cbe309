"""`make demo`'s program end to end on CPU: tiny model, LoRA training, loss drop, HF export, generation, report."""

import subprocess
import sys
from pathlib import Path

from primus_bridge.demo import PROMPTS
from primus_bridge.models.tiny import TinyLlamaSpec, ensure_tiny_llama

REPO = Path(__file__).resolve().parents[2]


def test_tiny_model_is_built_once_then_reused(tmp_path):
    folder, built = ensure_tiny_llama(REPO / "examples/tokenizer", tmp_path / "tiny", TinyLlamaSpec(hidden_size=32))
    again, built_again = ensure_tiny_llama(REPO / "examples/tokenizer", folder, TinyLlamaSpec(hidden_size=32))
    assert built and not built_again and again == folder
    _, rebuilt = ensure_tiny_llama(REPO / "examples/tokenizer", folder, TinyLlamaSpec(hidden_size=48))
    assert rebuilt


def test_demo_trains_exports_generates_and_reports(tmp_path):
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "primus_bridge.demo", "--engine", "hf", "--run_dir", str(run_dir)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "needs >= 30%" in done.stdout
    for question in PROMPTS:
        assert f"Q: {question}" in done.stdout
    report = (run_dir / "report.md").read_text()
    assert "Generations" in report and (run_dir / "loss_curve.png").stat().st_size > 1000
    model = AutoModelForCausalLM.from_pretrained(run_dir / "hf_model")
    assert model.config.num_hidden_layers == TinyLlamaSpec().num_hidden_layers
    assert (run_dir / "hf_model" / "adapter" / "adapter_config.json").is_file()
