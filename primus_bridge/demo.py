"""`make demo` / `python -m primus_bridge.demo --engine hf|megatron`: the first run on a fresh machine.

Builds the tiny random-weight Llama once (cached), fine-tunes it with LoRA through the normal training
command, checks that the loss fell, loads the HF export with plain `transformers`, and writes a run report
that says what the model is: it has never read any text but the training file, so it reproduces answers it
was trained on (shown next to the training answer) and cannot answer a question it has not seen (one held-out
prompt, labelled as such).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cli.errors import run_verb, wants_debug
from .config import ConfigError, add_config_arguments, load_config
from .data.formats import alpaca
from .data.records import Conversation, RawRecord, Turn
from .data.split import split_documents
from .logs import setup_logging
from .models.tiny import ensure_tiny_llama
from .run.report import format_table, loss_drop, read_result, write_run_report

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = "examples/configs/demo_lora_cpu.yaml"
TOKENIZER = "examples/tokenizer"
TRAINING_EXAMPLES = 3
"""Records of the training split whose answers the demo generates (the first single-turn ones)."""
HELD_OUT = "What is the capital of Italy?"
"""A question the training file does not hold (its neighbours ask for other capitals)."""
MIN_LOSS_DROP = 0.30


@dataclass(frozen=True)
class Generation:
    conversation: Conversation
    answer: str
    expected: str | None
    """The training answer; None for the held-out prompt."""

    @property
    def question(self) -> str:
        turn = self.conversation.turns[-1]
        return f"{turn.user}\n{turn.context}" if turn.context else turn.user

    @property
    def reproduced(self) -> bool:
        return self.expected is not None and self.answer.strip() == self.expected.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m primus_bridge.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("hf", "megatron"), default="hf", help="training engine (default hf)")
    parser.add_argument("--config", default=DEMO_CONFIG, help=f"demo training YAML (default {DEMO_CONFIG})")
    parser.add_argument("--run_dir", help="put checkpoints, export and report here (default: the config's, runs/demo)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser


def train_arguments(config: str, engine: str, run_dir: str | None) -> list[str]:
    """Training flags; --no_resume --overwrite make a re-run of the demo start over cleanly."""
    where = ["--save", f"{run_dir}/checkpoints", "--hf_save_path", f"{run_dir}/hf_model"] if run_dir else []
    return ["--config", config, "--engine", engine, *where, "--no_resume", "--overwrite"]


def demo_config(arguments: list[str]):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return load_config(parser.parse_args(arguments))


def training_examples(cfg, count: int = TRAINING_EXAMPLES) -> list[Conversation]:
    """The first `count` single-turn records of the run's train split (the split is keyed on record order)."""
    records = [json.loads(line) for line in Path(cfg.data.data_path).read_text().splitlines() if line.strip()]
    trained = split_documents(np.arange(len(records)), cfg.data.split_fractions(), cfg.data.seed)[0]
    picked = [alpaca(RawRecord(records[i], f"{cfg.data.data_path}:{i + 1}", int(i))) for i in trained
              if not records[i].get("history") and not records[i].get("system")]
    return picked[:count]


def held_out_example(cfg) -> Conversation:
    """HELD_OUT as a conversation; refuses to run if the training file holds it (the label would be false)."""
    for line in Path(cfg.data.data_path).read_text().splitlines():
        if line.strip() and json.loads(line).get("instruction") == HELD_OUT:
            raise ConfigError(f"{cfg.data.data_path}: holds the demo's held-out question {HELD_OUT!r}")
    return Conversation(None, (Turn(HELD_OUT, "x"),), "held-out prompt", -1)


def prompt_text(cfg, tokenizer, conversation: Conversation) -> str:
    """The conversation rendered by the run's prompt template, up to where its last answer starts."""
    from .data.resolve import run_template
    from .data.templates import get_template

    template = get_template(run_template(cfg, tokenizer).name, tokenizer, cfg.data)
    rendered = template.render(conversation)
    return rendered.text[:rendered.responses[-1][0]]


def generate_answers(export_dir: Path, cfg) -> list[Generation]:
    """Load the export with plain transformers; answer the training examples and the held-out prompt greedily."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    model = AutoModelForCausalLM.from_pretrained(export_dir).eval()
    asked = [(c, c.turns[-1].assistant) for c in training_examples(cfg)] + [(held_out_example(cfg), None)]
    generations = []
    for conversation, expected in asked:
        inputs = tokenizer(prompt_text(cfg, tokenizer, conversation), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=32, do_sample=False)
        answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        generations.append(Generation(conversation, answer, expected))
    return generations


def _model_section(result) -> str:
    return (f"A tiny Llama ({result.total_params:,} parameters, {result.trainable_params:,} of them in the LoRA "
            "adapters) whose weights are random: it has never read any text, so it knows no facts and no language. "
            "All it knows is what this run trained into it from the shipped sample file, so it cannot answer "
            "general questions. What the run shows is that training works: the loss falls, and the model now "
            "reproduces many answers from its training data. A question it was not trained on gets an answer in the "
            "trained shape with made-up content. With a real base model (Llama-3, Qwen2.5, ...) the same command "
            "keeps the model's knowledge and teaches it your data.")


def _quoted(text: str) -> str:
    return f"`{text.strip() or '(empty)'}`"


def _generation_section(generations: list[Generation]) -> str:
    rows = []
    for g in generations:
        if g.expected is None:
            rows.append(f"- **{g.question}** (held out: not in the training data; expect a wrong answer)\n"
                        f"  generated: {_quoted(g.answer)}")
        else:
            rows.append(f"- **{g.question}** (from the training data)\n  trained on: {_quoted(g.expected)}\n"
                        f"  generated: {_quoted(g.answer)} — {'reproduced' if g.reproduced else 'not reproduced'}")
    return "\n".join(rows)


def reproduced_count(generations: list[Generation]) -> tuple[int, int]:
    trained = [g for g in generations if g.expected is not None]
    return sum(g.reproduced for g in trained), len(trained)


def _where_section(cfg, run_dir: Path) -> list[tuple[str, str]]:
    rows = [("HF model (merged)", cfg.hf_save_path), ("checkpoints", cfg.checkpointing.save),
            ("report", str(run_dir / "report.md")), ("loss curve", str(run_dir / "loss_curve.png"))]
    adapter = Path(cfg.hf_save_path) / "adapter"
    if adapter.is_dir():
        rows.insert(1, ("LoRA adapter (PEFT)", str(adapter)))
    return rows


def _answer_and_report(cfg, engine: str, started: float) -> int:
    """Check the loss, generate from the export, write the report, print where everything is."""
    log = setup_logging()
    result = read_result(cfg.checkpointing.save)
    start, end, drop = loss_drop(result.losses)
    generations = generate_answers(Path(cfg.hf_save_path), cfg)
    run_dir = Path(cfg.checkpointing.save).parent
    where = _where_section(cfg, run_dir)
    hits, asked = reproduced_count(generations)
    write_run_report(run_dir, result, f"primus-bridge demo ({engine} engine)", [
        ("What this model is", _model_section(result)),
        (f"Generations (greedy, from the HF export): {hits} of {asked} training answers reproduced",
         _generation_section(generations)),
        ("Files", "\n".join(f"- {name}: `{path}`" for name, path in where))])
    log.info("demo: %s", _model_section(result))
    for g in generations:
        label = "held out, not in the training data" if g.expected is None else \
            f"from the training data, {'reproduced' if g.reproduced else 'NOT reproduced'}; trained on: {g.expected}"
        log.info("demo: Q (%s): %s\n        A: %s", label, g.question, g.answer or "(empty)")
    log.info("demo: %d of %d training answers reproduced exactly", hits, asked)
    log.info("demo: training loss %.3f -> %.3f (fell %.0f%%; needs >= %.0f%%) in %.0f s\n%s", start, end,
             100 * drop, 100 * MIN_LOSS_DROP, time.perf_counter() - started, format_table(where))
    if drop < MIN_LOSS_DROP:
        log.error("demo: the loss fell only %.0f%%; expected at least %.0f%%", 100 * drop, 100 * MIN_LOSS_DROP)
        return 1
    return 0


def run_demo(engine: str, config: str, run_dir: str | None = None) -> int:
    log = setup_logging()
    started = time.perf_counter()
    config = str(Path(config).resolve()) if Path(config).exists() else config
    run_dir = str(Path(run_dir).resolve()) if run_dir else None
    os.chdir(REPO)  # the demo config's paths are relative to the repository root
    arguments = train_arguments(config, engine, run_dir)
    cfg = demo_config(arguments)
    model_dir, built = ensure_tiny_llama(TOKENIZER, cfg.hf_model_name_or_path)
    log.info("demo: tiny Llama %s %s", "built in" if built else "cached in", model_dir)
    command = [sys.executable, "-m", "primus_bridge.train", *arguments]
    log.info("demo: training: %s", shlex.join(["python", *command[1:]]))
    code = subprocess.run(command).returncode
    if code:
        log.error("demo: training failed (exit code %d)", code)
        return code
    return _answer_and_report(cfg, engine, started)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    return run_verb(lambda: run_demo(args.engine, args.config, args.run_dir), wants_debug(argv))


if __name__ == "__main__":
    sys.exit(main())
