"""Measure peak GPU memory of Llama-shaped runs through the megatron engine and compare it with the planner.

On the GPU machine (one GPU; random-weight models of the 1B, 3B and 8B Llama shapes, built once each):
    python benchmarks/calibrate_planner.py
Re-compare a measurement file anywhere (no GPU needed):
    python benchmarks/calibrate_planner.py --compare benchmarks/reports/planner-calibration/planner_calibration_measurements.json

Writes, under --out_dir (default benchmarks/reports/planner-calibration/): planner_calibration_measurements.json (what was
measured, saved after every case), planner_calibration.json and planner_calibration.md (the comparison).
Exit code 0 when every case is within +-15%, 1 when some are not, 2 when a case could not run.
"""  # noqa: E501 - this docstring is the --help text; its command line and paths cannot be split

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from primus_bridge.bench.processes import log_tail, python_command, run_logged
from primus_bridge.bench.runner import child_env
from primus_bridge.bench.suites import BenchCase, Suite
from primus_bridge.bench.workspace import (
    Workspace, build_config, case_values, ensure_model, prepare_case_data, remove_model, write_run_config,
)
from primus_bridge.hardware import detect_gpu_type
from primus_bridge.logs import setup_logging
from primus_bridge.planner.calibration import (
    Measurement, compare, load_measurements, markdown_table, measurements_json, write_report,
)
from primus_bridge.utils.atomic import atomic_write_text
from primus_bridge.models.shape import ModelShape

REPO = Path(__file__).resolve().parents[1]

MEASUREMENTS_FILE = "planner_calibration_measurements.json"
DEFAULT_WORKDIR = REPO / ".cache" / "primus-bridge" / "calibration"
CASE_TIMEOUT_S = 900


@dataclass(frozen=True)
class CalibrationCase:
    """One measured configuration; two micro batches per step exercise gradient accumulation."""

    name: str
    shape: str
    """A benchmark shape (primus_bridge.bench.shapes): llama3.2-1b, llama3.2-3b, llama3-8b."""
    mode: str
    seq_length: int
    micro_batch_size: int
    recompute: bool

    def bench_case(self) -> BenchCase:
        return BenchCase(name=self.name, shape=self.shape, mode=self.mode, seq_length=self.seq_length,
                         micro_batch_size=self.micro_batch_size, global_batch_size=2 * self.micro_batch_size,
                         timeout_s=CASE_TIMEOUT_S)


# Full and LoRA, with and without recompute, seq 2048 and 4096, micro batch 1 and 2; grouped by shape.
CASES = (
    CalibrationCase("1b-sft-s2048-mb1", "llama3.2-1b", "sft", 2048, 1, False),
    CalibrationCase("1b-sft-s4096-mb2-recompute", "llama3.2-1b", "sft", 4096, 2, True),
    CalibrationCase("1b-lora-s4096-mb2", "llama3.2-1b", "lora", 4096, 2, False),
    CalibrationCase("3b-sft-s4096-mb1", "llama3.2-3b", "sft", 4096, 1, False),
    CalibrationCase("3b-sft-s2048-mb2-recompute", "llama3.2-3b", "sft", 2048, 2, True),
    CalibrationCase("3b-lora-s4096-mb1-recompute", "llama3.2-3b", "lora", 4096, 1, True),
    CalibrationCase("8b-lora-s4096-mb1", "llama3-8b", "lora", 4096, 1, False),
    CalibrationCase("8b-lora-s2048-mb2-recompute", "llama3-8b", "lora", 2048, 2, True),
    CalibrationCase("8b-lora-s4096-mb1-recompute", "llama3-8b", "lora", 4096, 1, True),
)

SUITE = Suite(name="planner-calibration", description="peak memory of the megatron engine on one GPU",
              device="gpu", systems=("megatron",), warmup_steps=1, timed_steps=3,
              cases=tuple(c.bench_case() for c in CASES), peak_squares=(8192,), gpus=1)


def run_values(case: CalibrationCase, model_dir: Path, data_file: Path, workspace: Workspace) -> dict:
    """The run's config (the benchmarks' per-case config plus the recompute setting)."""
    values = case_values(case.bench_case(), SUITE, "megatron", model_dir, data_file, workspace)
    values["activation_checkpointing"] = {"recompute_activations": case.recompute}
    build_config(values, case.bench_case(), SUITE.gpus)  # the same checks a user's config gets
    return values


def measure(case: CalibrationCase, workspace: Workspace, model_dir: Path) -> Measurement:
    """Train a few steps through the megatron engine in a fresh process; read back its peak memory."""
    data_file, _, _ = prepare_case_data(case.bench_case(), SUITE, model_dir, workspace)
    values = run_values(case, model_dir, data_file, workspace)
    run_dir, log = workspace.run_dir(case.bench_case(), "megatron"), workspace.log_file(case.bench_case(), "megatron")
    config, out = write_run_config(values, run_dir), run_dir / "result.json"
    out.unlink(missing_ok=True)
    command = python_command("primus_bridge.bench.worker", ["--config", str(config), "--out", str(out)], SUITE.gpus)
    finished = run_logged(command, log, CASE_TIMEOUT_S, workspace.engine_dir(case.shape), child_env())
    if finished.returncode != 0 or not out.is_file():
        raise RuntimeError(f"{case.name}: exit code {finished.returncode}:\n{log_tail(log)}")
    train = json.loads(out.read_text())["train_result"]
    shape = ModelShape.from_hf_config(json.loads((model_dir / "config.json").read_text()))
    return Measurement(case=case.name, shape=shape, config=values, world_size=1, gpus_per_node=1,
                       peak_memory_allocated=train["peak_memory_allocated"],
                       peak_memory_reserved=train.get("peak_memory_reserved"))


def measure_all(cases: list[CalibrationCase], gpu: str, workspace: Workspace, out_file: Path
                ) -> tuple[list[Measurement], list[str]]:
    """(measurements, failures): every case, one model shape at a time; a failed case does not stop the
    others, and the measurement file is rewritten after each success."""
    log, measurements, failures = setup_logging(), [], []
    for index, case in enumerate(cases):
        log.info("%s: measuring", case.name)
        try:
            model_dir = ensure_model(workspace, case.bench_case(), SUITE,
                                     workspace.log_file(case.bench_case(), "build"))
            measurements.append(measure(case, workspace, model_dir))
            atomic_write_text(out_file, measurements_json(gpu, measurements))
        except RuntimeError as err:
            failures.append(str(err))
            log.error("%s", err)
        if index + 1 == len(cases) or cases[index + 1].shape != case.shape:
            remove_model(workspace, case.shape)
    return measurements, failures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=Path, metavar="MEASUREMENTS",
                        help="only compare this measurement file with the planner (no GPU needed)")
    parser.add_argument("--cases", help=f"comma-separated subset of: {', '.join(c.name for c in CASES)}")
    parser.add_argument("--gpu", help="GPU type (default: detected)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="models, data and logs")
    parser.add_argument("--out_dir", type=Path, default=REPO / "benchmarks" / "reports" / "planner-calibration")
    return parser


def selected(names: str | None) -> list[CalibrationCase]:
    if not names:
        return list(CASES)
    wanted, known = names.split(","), {c.name: c for c in CASES}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SystemExit(f"error: --cases: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    return [c for c in CASES if c.name in wanted]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    failures = []
    if args.compare:
        gpu, measurements = load_measurements(args.compare)
    else:
        gpu = args.gpu or detect_gpu_type()
        if gpu is None:
            raise SystemExit("error: no known GPU visible; run on the GPU machine, or pass --compare FILE")
        measurements, failures = measure_all(selected(args.cases), gpu, Workspace(args.workdir),
                                             args.out_dir / MEASUREMENTS_FILE)
    rows = compare(gpu, measurements)
    if rows:
        write_report(gpu, rows, args.out_dir)
        print(markdown_table(gpu, rows), end="")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if failures or not rows:
        return 2
    return 0 if all(r.within_tolerance for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
