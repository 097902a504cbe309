"""Where the gpu-marked tests of this folder write their JSON: $PRIMUS_REPORT_DIR (default
benchmarks/reports/megatron-engine; benchmarks/run_gpu_tests.sh points it at the folder it hands back)."""

import json
import os
from pathlib import Path

from primus_bridge.utils.atomic import atomic_write_text


def report_dir(repo: Path) -> Path:
    return Path(os.environ.get("PRIMUS_REPORT_DIR", repo / "benchmarks/reports/megatron-engine"))


def write_report(repo: Path, name: str, report: dict) -> Path:
    """The JSON report `name` in `report_dir`, written whole and atomically."""
    path = report_dir(repo) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2, default=str) + "\n")
    return path


def record(repo: Path, section: str, data: dict, report_name: str) -> None:
    """Set `section` of the JSON report `report_name`, keeping its other sections."""
    path = report_dir(repo) / report_name
    report = json.loads(path.read_text()) if path.is_file() else {}
    write_report(repo, report_name, report | {section: data})
