"""A large data file streams through the readers with bounded memory (RSS growth measured in /proc)."""

import json
import time
from pathlib import Path

import pytest

from primus_bridge.data.formats import alpaca
from primus_bridge.data.readers import read_records

from pipeline_helpers import alpaca_record

MB = 1 << 20
RSS_GROWTH_LIMIT = 64 * MB


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def write_big(path: Path, megabytes: int, array: bool) -> int:
    """About `megabytes` MB of distinct alpaca records (a 1 MB block written repeatedly); returns the count."""
    lines, size, i = [], 0, 0
    while size < MB:
        line = json.dumps(alpaca_record(f"Question {i}: what is {i} + {i}?", f"{i} + {i} = {2 * i}. " + "z" * 120))
        lines.append(line)
        size += len(line) + 2
        i += 1
    block = (",\n" if array else "\n").join(lines)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[\n" if array else "")
        for n in range(megabytes):
            handle.write((",\n" if array and n else "") + block + ("" if array else "\n"))
        handle.write("\n]\n" if array else "")
    return len(lines) * megabytes


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
@pytest.mark.parametrize("suffix, megabytes", [(".jsonl", 200), (".json", 60)])
def test_large_file_streams_with_bounded_memory(tmp_path, suffix, megabytes):
    path = tmp_path / f"big{suffix}"
    expected = write_big(path, megabytes, array=suffix == ".json")
    assert path.stat().st_size > megabytes * MB * 0.9
    baseline, peak, count = rss_bytes(), 0, 0
    started = time.monotonic()
    for raw in read_records([path]):
        alpaca(raw)
        count += 1
        if count % 20_000 == 0:
            peak = max(peak, rss_bytes() - baseline)
    assert count == expected
    assert peak < RSS_GROWTH_LIMIT, f"RSS grew {peak / MB:.0f} MB while streaming a {megabytes} MB file"
    assert time.monotonic() - started < 120
    path.unlink()
