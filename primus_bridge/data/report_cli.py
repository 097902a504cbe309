"""`primus-bridge data`: see what a run would train on before spending GPU hours.

Prints records read, samples kept, skipped / dropped with reasons, tokens, trainable-token share, truncation,
packing efficiency, a length histogram, columns the format does not read, `{{name}}` placeholders left in the
text, and rendered samples (--samples N, default 2) with the trained text between ⟦ and ⟧; --json prints the same
as one JSON object. Every config flag works (--config, --set, --seq_length, ...).
"""

import argparse
import json
import sys

from ..cli.errors import run_verb, wants_debug
from ..cli.parser import ArgumentParser
from ..config import add_config_arguments, load_config
from .pipeline import prepare_data
from .report import REPORT_SAMPLES, format_text, marked_samples
from .tokenizer import load_tokenizer


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="primus-bridge data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--samples", type=_count, default=REPORT_SAMPLES, metavar="N",
                        help=f"show the first N rendered samples with the trained text marked (default "
                             f"{REPORT_SAMPLES}; 0: none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)

    def body() -> int:
        cfg = load_config(args)
        tokenizer = load_tokenizer(cfg)
        prepared = prepare_data(cfg, tokenizer)
        report = prepared.report
        report.samples = marked_samples(prepared.train.store, tokenizer, args.samples)
        print(json.dumps(report.to_dict(), ensure_ascii=False) if args.json else format_text(report))
        return 0

    return run_verb(body, wants_debug(argv))


if __name__ == "__main__":
    sys.exit(main())
