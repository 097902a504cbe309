"""`primus-bridge <verb>`: one entry point; each verb lives in its own module and takes its own flags."""

import importlib
import sys

from .parser import version_line

VERBS = {  # verb -> (module with main(argv) -> int, one-line help)
    "train": ("primus_bridge.train", "fine-tune (SFT or LoRA) from a YAML config and flags"),
    "convert": ("primus_bridge.convert", "import a HF model or export a checkpoint to HF"),
    "chat": ("primus_bridge.chat.cli", "talk to a trained model with its training template (or answer a JSONL file)"),
    "print-config": ("primus_bridge.cli.print_config",
                     "print the resolved config (--explain: where each value came from)"),
    "data": ("primus_bridge.data.report_cli", "inspect a dataset: counts, trainable tokens, packing, samples"),
    "plan": ("primus_bridge.planner.cli", "predict per-GPU memory and speed before launching"),
    "bench": ("primus_bridge.bench.cli", "run a benchmark suite and write reports"),
    "doctor": ("primus_bridge.doctor", "check GPUs, drivers, libraries and paths"),
    "launch": ("primus_bridge.launch", "start torchrun from SLURM / Kubernetes / local environment"),
}


def _usage() -> str:
    width = max(len(v) for v in VERBS)
    rows = "\n".join(f"  {verb:<{width}}  {help_}" for verb, (_, help_) in VERBS.items())
    return (f"usage: primus-bridge <verb> [flags]   (primus-bridge <verb> --help for its flags; "
            f"primus-bridge --version)\n\nverbs:\n{rows}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(version_line())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"error: unknown verb {verb!r}\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(VERBS[verb][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
