"""`primus-bridge bench --suite NAME [--out DIR]`: run a benchmark suite and write its reports."""

import argparse
import datetime
import sys
from pathlib import Path

from ..cli.errors import run_verb
from ..cli.parser import ArgumentParser
from ..logs import setup_logging
from .report.index import write_index
from .results import load_results
from .runner import RunOptions, render, run_suite
from .suites import SUITES, get_suite
from .workspace import DEFAULT_WORKDIR, REPO, Workspace

REPORTS_ROOT = REPO / "benchmarks" / "reports"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="primus-bridge bench", description=__doc__)
    parser.add_argument("--suite", required=True, choices=sorted(SUITES), help="which suite to run")
    parser.add_argument("--out", type=Path, help="report folder (default benchmarks/reports/<date>-<device>-<suite>)")
    parser.add_argument("--cases", help="comma-separated case names to run (default: all of the suite)")
    parser.add_argument("--systems", help="comma-separated systems to run, in this order (default: all of the suite's)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in --out that finished (ok, skipped or not applicable); "
                             "run the rest")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="start no run that could end later than this many seconds from now")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="scratch folder for models, data, per-run configs and logs")
    parser.add_argument("--render", action="store_true", help="only rewrite the reports from --out's results.json")
    parser.add_argument("--profile", action="store_true",
                        help="profile each run's last warm-up step (not timed); operation tables go to --out/profiles/")
    return parser


def default_out(suite_name: str, on_gpu: bool) -> Path:
    from ..hardware import detect_gpu_type

    device = (detect_gpu_type() or "gpu") if on_gpu else "cpu"
    return REPORTS_ROOT / f"{datetime.date.today().isoformat()}-{device}-{suite_name}"


def selected_cases(suite, names: str | None) -> tuple:
    if not names:
        return suite.cases
    return tuple(suite.case(name.strip()) for name in names.split(",") if name.strip())


def selected_systems(suite, names: str | None) -> tuple[str, ...] | None:
    if not names:
        return None
    chosen = tuple(name.strip() for name in names.split(",") if name.strip())
    unknown = [name for name in chosen if name not in suite.systems]
    if unknown:
        raise KeyError(f"suite {suite.name} has no system {', '.join(unknown)}; systems: {', '.join(suite.systems)}")
    return chosen


def refresh_index(out: Path) -> None:
    if out.resolve().parent == REPORTS_ROOT.resolve():
        write_index(REPORTS_ROOT)


def summary(results) -> str:
    lines = []
    for run in results.runs:
        m = run.metrics
        numbers = f"{m.tokens_per_s_per_gpu:,.0f} tokens/s/GPU, MFU {m.mfu_measured or 0:.1%} (measured peak)" \
            if m else (run.reason or "").splitlines()[0] if run.reason else ""
        lines.append(f"  {run.case:<28} {run.system:<12} {run.status:<14} {numbers}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    log = setup_logging()
    suite = get_suite(args.suite)
    cases = selected_cases(suite, args.cases)
    out = args.out or default_out(suite.name, suite.device == "gpu")
    if args.render:
        render(load_results(out), suite, out)
    else:
        options = RunOptions(suite, out, Workspace(args.workdir), cases, args.resume, args.time_budget, args.profile,
                             selected_systems(suite, args.systems))
        results = run_suite(options)
        log.info("results:\n%s", summary(results))
    refresh_index(out)
    log.info("report: %s", out / "report.md")
    failed = [r for r in load_results(out).runs if r.status in ("failed", "timeout")]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_verb(lambda: run(args), debug=False)
    except (KeyError, FileNotFoundError, ValueError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
