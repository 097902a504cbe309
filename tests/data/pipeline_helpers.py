"""Helpers shared by the data-pipeline tests (imported by name; conftest.py holds the fixtures)."""

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = REPO / "examples/tokenizer"


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def chat(*texts: str, system: str | None = None) -> dict:
    """A sharegpt record from alternating user / assistant texts."""
    turns = [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(texts)]
    return ({"system": system} if system else {}) | {"conversations": turns}


def alpaca_record(instruction: str, output: str, context: str = "", **extra) -> dict:
    return {"instruction": instruction, "input": context, "output": output} | extra
