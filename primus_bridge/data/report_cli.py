"""`primus-bridge data`: see what a run would train on before spending GPU hours.

Prints records read, samples kept, skipped / dropped with reasons, tokens, trainable-token share, truncation,
packing efficiency, a length histogram and two rendered samples with the trained text marked; --json prints
the same as one JSON object. Every config flag works (--config, --set, --seq_length, ...).
"""

import argparse
import json
import sys

from ..cli.errors import run_verb, wants_debug
from ..config import add_config_arguments, load_config
from .pipeline import prepare_data
from .report import format_text
from .tokenizer import load_tokenizer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="primus-bridge data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)

    def body() -> int:
        cfg = load_config(args)
        report = prepare_data(cfg, load_tokenizer(cfg)).report
        print(json.dumps(report.to_dict(), ensure_ascii=False) if args.json else format_text(report))
        return 0

    return run_verb(body, wants_debug(argv))


if __name__ == "__main__":
    sys.exit(main())
