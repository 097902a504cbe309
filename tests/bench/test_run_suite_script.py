"""benchmarks/run_suite.sh for real on the cpu-smoke suite: what a device call gets back in $OUT, also when the call is
cut short while a run is going (the machine taken back, the call's time limit)."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SNAPSHOT_S = 1


def _script_env(tmp_path: Path) -> dict[str, str]:
    """The script calls `python3`: this interpreter, through a wrapper first on PATH; no wheels to install."""
    shims = tmp_path / "bin"
    shims.mkdir()
    python3 = shims / "python3"
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python3.chmod(0o755)
    (tmp_path / "no-wheels").mkdir()
    return {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "OUT": str(tmp_path / "out"),
            "BENCH_WORKDIR": str(tmp_path / "work"), "WHEELS_DIR": str(tmp_path / "no-wheels"),
            "SNAPSHOT_S": str(SNAPSHOT_S)}


def _start(repo: Path, tmp_path: Path, cases: str) -> subprocess.Popen:
    command = ["bash", "benchmarks/run_suite.sh", "cpu-smoke", str(tmp_path / "report"), "300", "--cases", cases,
               "--systems", "hf"]
    return subprocess.Popen(command, cwd=repo, env=_script_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _runs_in(archive: Path) -> dict[str, str]:
    """{case: status} of the results.json inside the returned bench.tgz."""
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("report/results.json"))
        results = json.load(tar.extractfile(member))
    return {run["case"]: run["status"] for run in results["runs"]}


def _ok_runs(report: Path) -> int:
    try:
        return sum(run["status"] == "ok" for run in json.loads((report / "results.json").read_text())["runs"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_a_finished_call_returns_the_report_and_every_log(repo, tmp_path):
    process = _start(repo, tmp_path, "tiny-sft-s256")
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["bench.log", "bench.tgz"]  # no snapshot left half written
    assert _runs_in(out / "bench.tgz") == {"tiny-sft-s256": "ok"}
    with tarfile.open(out / "bench.tgz") as tar:
        assert "logs/tiny-sft-s256-hf.log" in tar.getnames()
    assert "no wheels in" in output


def test_a_call_cut_short_still_returns_the_runs_that_finished(repo, tmp_path):
    process = _start(repo, tmp_path, "tiny-sft-s256,tiny-lora-s256")
    try:
        deadline = time.monotonic() + 240
        while _ok_runs(tmp_path / "report") < 1:  # the first case finished; the second is starting
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
            time.sleep(0.2)
        time.sleep(3 * SNAPSHOT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # as the machine going away: no final snapshot
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the suite ended before it was cut short: nothing was tested"
    assert _runs_in(tmp_path / "out" / "bench.tgz").get("tiny-sft-s256") == "ok"
