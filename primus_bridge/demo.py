"""`make demo` / `python -m primus_bridge.demo --engine hf|megatron`: the first run on a fresh machine.

Builds the tiny random-weight Llama once (cached), fine-tunes it with LoRA through the normal training
command, checks that the loss fell, loads the HF export with plain `transformers`, generates answers to
two prompts, and writes a run report.
"""

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .cli.errors import run_verb, wants_debug
from .config import add_config_arguments, load_config
from .logs import setup_logging
from .models.tiny import ensure_tiny_llama
from .run.report import format_table, loss_drop, read_result, write_run_report

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = "examples/configs/demo_lora_cpu.yaml"
TOKENIZER = "examples/tokenizer"
PROMPTS = ("What is 14 + 25?", "Convert 3 kilometers to meters.")
MIN_LOSS_DROP = 0.30


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


def prompt_text(cfg, tokenizer, question: str) -> str:
    """The question rendered by the run's prompt template, up to where the answer starts."""
    from .data.records import Conversation, Turn
    from .data.resolve import run_template
    from .data.templates import get_template

    template = get_template(run_template(cfg, tokenizer).name, tokenizer, cfg.data)
    rendered = template.render(Conversation(None, (Turn(question, "x"),), "demo prompt", 0))
    return rendered.text[:rendered.responses[-1][0]]


def generate_answers(export_dir: Path, cfg) -> list[tuple[str, str]]:
    """Load the export with plain transformers and answer PROMPTS greedily."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    model = AutoModelForCausalLM.from_pretrained(export_dir).eval()
    answers = []
    for question in PROMPTS:
        inputs = tokenizer(prompt_text(cfg, tokenizer, question), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=32, do_sample=False)
        answers.append((question, tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)))
    return answers


def _generation_section(answers: list[tuple[str, str]]) -> str:
    return "\n".join(f"- **{q}**\n  `{a.strip() or '(empty)'}`" for q, a in answers)


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
    answers = generate_answers(Path(cfg.hf_save_path), cfg)
    run_dir = Path(cfg.checkpointing.save).parent
    where = _where_section(cfg, run_dir)
    write_run_report(run_dir, result, f"primus-bridge demo ({engine} engine)", [
        ("Generations (greedy, from the HF export)", _generation_section(answers)),
        ("Files", "\n".join(f"- {name}: `{path}`" for name, path in where))])
    for question, answer in answers:
        log.info("demo: Q: %s\n        A: %s", question, answer.strip() or "(empty)")
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
