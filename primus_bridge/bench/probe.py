"""The device and its measured matmul peak, in a process of its own:
`python -m primus_bridge.bench.probe --dtype bf16 --shapes 8192x8192x8192,4096x28672x4096 --out probe.json`."""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ..utils.atomic import atomic_write_text
from .environment import current_device_info
from .peak import measure_matmul_peak


def _shapes(text: str) -> list[tuple[int, int, int]]:
    try:
        shapes = [tuple(int(side) for side in item.split("x")) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MxNxK[,MxNxK...]") from None
    if any(len(shape) != 3 or min(shape) < 1 for shape in shapes):
        raise argparse.ArgumentTypeError(f"{text!r}: expected MxNxK[,MxNxK...] of positive sizes")
    return shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m primus_bridge.bench.probe", description=__doc__)
    parser.add_argument("--dtype", required=True, choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--shapes", required=True, type=_shapes, help="comma-separated MxNxK matmul shapes")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup-s", type=float, default=2.0, help="seconds of matmuls before timing")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    device = current_device_info()
    torch_device = "cuda:0" if device.kind == "cuda" else "cpu"
    peak = measure_matmul_peak(torch_device, args.dtype, args.shapes, args.repeats, args.warmup_s)
    record = {"device": dataclasses.asdict(device), "peak": dataclasses.asdict(peak)}
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"{device.name}: peak {peak.tflops_median:.4g} TFLOP/s: {peak.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
