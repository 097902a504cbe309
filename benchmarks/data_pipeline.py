"""Data-pipeline throughput: read + template + tokenize + mask + pack generated records.

    python benchmarks/data_pipeline.py [--records 100000] [--seq_length 2048] [--json]
    python benchmarks/data_pipeline.py --real_length [--records 20000]

Default: alpaca records of about 140 tokens (alpaca template). --real_length: sharegpt conversations of real
SFT length (one to four turns, a few hundred to a couple of thousand tokens, median about 860; ChatML
template), where tokens/s is the number that carries over to real data.

Uses the project tokenizer (examples/tokenizer) and a fresh cache folder, so nothing is served from cache.
Prints samples/s and tokens/s of prepare_data (record generation is not timed), and the CPU seconds it used
with the rates per CPU second: on a shared machine the load average says how much of the cores the run
actually had (the one-minute average before the run is the other work's; the one after includes this run), and
the per-CPU-second rates times the idle cores bound what they give.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _records(real_length: bool, records: int):
    from primus_bridge.data.synthetic import synthetic_alpaca, synthetic_chats

    if real_length:
        return "sharegpt", "chatml", synthetic_chats(records, seed=0)
    return "alpaca", "alpaca", synthetic_alpaca(records, seed=0)


def run(records: int, seq_length: int, template: str | None = None, real_length: bool = False) -> dict:
    from primus_bridge.config import PrimusConfig
    from primus_bridge.data import load_tokenizer, prepare_data
    from primus_bridge.data.synthetic import write_jsonl

    dataset_format, default_template, generated = _records(real_length, records)
    template = template or default_template
    with tempfile.TemporaryDirectory() as tmp:
        data_file = write_jsonl(Path(tmp) / f"{dataset_format}.jsonl", generated)
        cfg = PrimusConfig.model_validate({
            "model": {"tokenizer": str(REPO / "examples/tokenizer")},
            "data": {"data_path": str(data_file), "dataset_format": dataset_format, "prompt_template": template,
                     "chat_format": template, "seq_length": seq_length, "cache_dir": str(Path(tmp) / "cache")},
        })
        tokenizer = load_tokenizer(cfg)
        load_before = os.getloadavg()[0]
        start, cpu_start = time.perf_counter(), time.process_time()
        report = prepare_data(cfg, tokenizer).report
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "mode": "real_length" if real_length else "short", "records": records, "dataset_format": dataset_format,
        "template": template, "seq_length": seq_length, "seconds": round(seconds, 3),
        "samples_per_s": round(report.samples_kept / seconds), "tokens_per_s": round(report.tokens / seconds),
        "tokens": report.tokens, "tokens_per_sample": round(report.tokens / report.samples_kept, 1),
        "truncated": sum(report.truncated.values()), "packing_efficiency": round(report.packing_efficiency, 4),
        "cpu_seconds": round(cpu_seconds, 3), "cores_used": round(cpu_seconds / seconds, 2),
        "samples_per_cpu_s": round(report.samples_kept / cpu_seconds),
        "tokens_per_cpu_s": round(report.tokens / cpu_seconds),
        "cpu_count": os.cpu_count(), "load_average_1m_before": load_before, "load_average_1m": os.getloadavg()[0],
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "unset (on)"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=None, help="default 100000, or 20000 with --real_length")
    parser.add_argument("--seq_length", type=int, default=2048)
    parser.add_argument("--template", default=None, help="default alpaca, or chatml with --real_length")
    parser.add_argument("--real_length", action="store_true", help="real-length chat records (see above)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    records = args.records or (20_000 if args.real_length else 100_000)
    result = run(records, args.seq_length, args.template, args.real_length)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['records']} {result['dataset_format']} records ({result['tokens_per_sample']} tokens a "
              f"sample, {result['truncated']} truncated) in {result['seconds']} s: {result['samples_per_s']} "
              f"samples/s, {result['tokens_per_s']} tokens/s (packing efficiency {result['packing_efficiency']:.1%}); "
              f"{result['cpu_seconds']} CPU s ({result['cores_used']} cores busy) = {result['samples_per_cpu_s']} "
              f"samples and {result['tokens_per_cpu_s']} tokens per CPU second on {result['cpu_count']} cores, "
              f"load average {result['load_average_1m_before']:.1f} before the run, "
              f"{result['load_average_1m']:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
