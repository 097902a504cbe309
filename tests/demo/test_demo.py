"""`make demo`'s program end to end on CPU: tiny model, LoRA training, loss drop, HF export, generation, report."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from primus_bridge.config import ConfigError
from primus_bridge.demo import (
    DEMO_CONFIG,
    HELD_OUT,
    TRAINING_EXAMPLES,
    demo_config,
    held_out_example,
    train_arguments,
    training_examples,
)
from primus_bridge.models.tiny import TinyLlamaSpec, ensure_tiny_llama

pytestmark = pytest.mark.slow

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
    assert f"Q (held out, not in the training data): {HELD_OUT}" in done.stdout
    assert done.stdout.count("Q (from the training data") == TRAINING_EXAMPLES
    report = (run_dir / "report.md").read_text()
    assert "## What this model is" in report and "weights are random" in report
    assert f"**{HELD_OUT}** (held out: not in the training data; expect a wrong answer)" in report
    assert report.count("(from the training data)") == report.count("trained on: ") == TRAINING_EXAMPLES
    hits = int(re.search(r"(\d+) of \d+ training answers reproduced", report)[1])
    assert report.count("— reproduced") == hits and report.count("— not reproduced") == TRAINING_EXAMPLES - hits
    assert (run_dir / "loss_curve.png").stat().st_size > 1000
    model = AutoModelForCausalLM.from_pretrained(run_dir / "hf_model")
    assert model.config.num_hidden_layers == TinyLlamaSpec().num_hidden_layers
    assert (run_dir / "hf_model" / "adapter" / "adapter_config.json").is_file()


def demo_cfg():
    return demo_config(train_arguments(str(REPO / DEMO_CONFIG), "hf", None))


def test_the_demo_asks_training_records_and_a_question_the_data_does_not_hold(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = demo_cfg()
    records = [json.loads(line) for line in (REPO / cfg.data.data_path).read_text().splitlines()]
    examples = training_examples(cfg)
    assert len(examples) == TRAINING_EXAMPLES
    for example in examples:
        record = records[example.ordinal]
        assert (example.turns[-1].user, example.turns[-1].assistant) == (record["instruction"], record["output"])
    assert HELD_OUT not in {r["instruction"] for r in records}
    assert held_out_example(cfg).turns[-1].user == HELD_OUT

    holding = tmp_path / "data.jsonl"
    holding.write_text(json.dumps({"instruction": HELD_OUT, "input": "", "output": "Rome."}) + "\n")
    cfg.data.data_path = str(holding)
    with pytest.raises(ConfigError, match="holds the demo's held-out question"):
        held_out_example(cfg)
