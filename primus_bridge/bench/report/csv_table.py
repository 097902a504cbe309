"""results.csv: one row per (case, system) with every number."""

import csv
import io
from pathlib import Path

from ...utils.atomic import atomic_write_text
from ..results import BenchResults
from .rows import run_row


def csv_text(results: BenchResults) -> str:
    rows = [run_row(run, results.case_info(run.case)) for run in results.runs]
    if not rows:
        return ""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(results: BenchResults, path: Path) -> Path:
    atomic_write_text(path, csv_text(results))
    return path
