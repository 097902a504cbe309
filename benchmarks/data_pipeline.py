"""Data-pipeline throughput: read + template + tokenize + mask + pack generated alpaca records.

    python benchmarks/data_pipeline.py [--records 100000] [--seq_length 2048] [--json]

Uses the project tokenizer (examples/tokenizer) and a fresh cache folder, so nothing is served from cache.
Prints samples/s and tokens/s of prepare_data (record generation is not timed), and the CPU seconds it
used: on a shared machine the load average says how much of the cores the run actually had.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(records: int, seq_length: int, template: str) -> dict:
    from primus_bridge.config import PrimusConfig
    from primus_bridge.data import load_tokenizer, prepare_data
    from primus_bridge.data.synthetic import synthetic_alpaca, write_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        data_file = write_jsonl(Path(tmp) / "alpaca.jsonl", synthetic_alpaca(records, seed=0))
        cfg = PrimusConfig.model_validate({
            "model": {"tokenizer": str(REPO / "examples/tokenizer")},
            "data": {"data_path": str(data_file), "dataset_format": "alpaca", "prompt_template": template,
                     "seq_length": seq_length, "cache_dir": str(Path(tmp) / "cache")},
        })
        tokenizer = load_tokenizer(cfg)
        start, cpu_start = time.perf_counter(), time.process_time()
        report = prepare_data(cfg, tokenizer).report
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "records": records, "seconds": round(seconds, 3), "samples_per_s": round(report.samples_kept / seconds),
        "tokens_per_s": round(report.tokens / seconds), "tokens": report.tokens, "template": template,
        "seq_length": seq_length, "packing_efficiency": round(report.packing_efficiency, 4),
        "cpu_seconds": round(cpu_seconds, 3), "samples_per_cpu_s": round(report.samples_kept / cpu_seconds),
        "cpu_count": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seq_length", type=int, default=2048)
    parser.add_argument("--template", default="alpaca")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.records, args.seq_length, args.template)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['records']} records in {result['seconds']} s: {result['samples_per_s']} samples/s, "
              f"{result['tokens_per_s']} tokens/s (packing efficiency {result['packing_efficiency']:.1%}); "
              f"{result['cpu_seconds']} CPU s = {result['samples_per_cpu_s']} samples per CPU second on "
              f"{result['cpu_count']} cores, load average {result['load_average_1m']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
