"""Generated alpaca records of a realistic shape, for throughput benchmarks and large-input tests."""

import json
import random
from collections.abc import Iterator
from pathlib import Path

_WORDS = ("the model reads a short instruction and writes a clear answer about numbers units cities rivers "
          "history science cooking travel music weather language code data training evaluation").split()


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."


def synthetic_alpaca(count: int, seed: int = 0) -> Iterator[dict]:
    """`count` alpaca records: about a third with `input`, answers of one to four sentences."""
    rng = random.Random(seed)
    for i in range(count):
        a, b = rng.randint(1, 999), rng.randint(1, 999)
        record = {"instruction": f"{_sentence(rng, 4, 12)} What is {a} + {b}?",
                  "input": _sentence(rng, 5, 20) if i % 3 == 0 else "",
                  "output": f"{a} + {b} = {a + b}. " + " ".join(_sentence(rng, 5, 15) for _ in range(rng.randint(1, 4)))}
        yield record


def write_jsonl(path: str | Path, records) -> Path:
    """Write records as JSON Lines (a plain write: this is generated test input, not a product output)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
