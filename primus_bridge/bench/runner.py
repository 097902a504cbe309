"""Run a suite: probe the device once, then every case on every system in a fresh process, saving as it goes.

Results and reports are rewritten after each run, so a run stopped at its time budget (or killed)
still leaves a complete report of what finished; `resume` continues where it stopped.
"""

import datetime
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from ..models.flops import FORMULA_TEXT, flops_per_token
from ..run.profiler import gaps_summary_path, gaps_table_path, operation_table_path
from ..utils.atomic import atomic_write_text
from .environment import DeviceInfo, capture_environment, git_revision
from .metrics import compute_metrics
from .peak import MatmulPeak, datasheet_peak_tflops
from .processes import log_tail, python_command, run_logged
from .report import write_reports
from .results import (
    RESULTS_FILE,
    BenchCall,
    BenchResults,
    CaseInfo,
    DeviceBusy,
    SystemRun,
    load_results,
    save_results,
)
from .shapes import shape_from_hf_config
from .suites import SYSTEMS, BenchCase, Suite
from .targets import evaluate
from .workspace import REPO, Workspace, case_values, ensure_model, prepare_case_data, remove_model, write_run_config

log = logging.getLogger("primus_bridge")
PROBE_TIMEOUT_S = 300
DONE = ("ok", "skipped", "not_applicable")


@dataclass(frozen=True)
class RunOptions:
    suite: Suite
    out_dir: Path
    workspace: Workspace
    cases: tuple[BenchCase, ...]
    resume: bool = False
    time_budget_s: float | None = None
    """Start no run that could end after this many seconds from the start."""
    profile: bool = False
    """Profile the last warm-up step of every run (see profile_values)."""
    systems: tuple[str, ...] | None = None
    """Run only these of the suite's systems (None: all of them)."""


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def probe_device(suite: Suite, workspace: Workspace) -> tuple[DeviceInfo, MatmulPeak]:
    out, log_file = workspace.root / "probe.json", workspace.root / "logs" / "probe.log"
    shapes = ",".join("x".join(map(str, shape)) for shape in suite.peak_shapes())
    args = ["--dtype", suite.precision, "--shapes", shapes, "--out", str(out),
            "--warmup-s", "5.0" if suite.device == "gpu" else "0.5"]
    finished = run_logged(python_command("primus_bridge.bench.probe", args, gpus=0), log_file, PROBE_TIMEOUT_S, REPO)
    if finished.returncode != 0:
        raise RuntimeError(f"the device probe failed ({finished.returncode=}):\n{log_tail(log_file)}")
    record = json.loads(out.read_text())
    return DeviceInfo(**record["device"]), MatmulPeak.from_record(record["peak"])


def new_call(device: DeviceInfo, peak: MatmulPeak) -> BenchCall:
    commit, dirty = git_revision(REPO)
    return BenchCall(started=now(), device=device.name, revision=commit, dirty=dirty, measured_peak=peak)


def new_results(suite: Suite, workspace: Workspace) -> BenchResults:
    device, peak = probe_device(suite, workspace)
    if suite.device == "gpu" and device.kind != "cuda":
        raise RuntimeError(f"suite {suite.name} runs on GPUs and this machine has none; try --suite cpu-smoke")
    log.info("measured %s matmul peak: %.1f TFLOP/s on %s", peak.dtype, peak.tflops_median, device.name)
    return BenchResults(
        suite=suite.name, description=suite.description, started=now(), updated=now(), precision=suite.precision,
        data_source=suite.data_source,
        warmup_steps=suite.warmup_steps, timed_steps=suite.timed_steps,
        systems={name: SYSTEMS[name].description for name in suite.systems},
        environment=capture_environment(device, REPO),
        datasheet_peak_tflops=datasheet_peak_tflops(device.gpu_type, suite.precision), flops_formula=FORMULA_TEXT,
        calls=[new_call(device, peak)],
    )


def resumed_results(options: RunOptions) -> BenchResults:
    """The folder's results plus this call, whose machine's peak is measured again: each run's MFU is against the
    peak of the machine that ran it. A machine of another model is refused (its runs would not compare)."""
    results = load_results(options.out_dir)
    if results.suite != options.suite.name:
        raise ValueError(f"{options.out_dir} holds suite {results.suite!r}, not {options.suite.name!r}")
    if results.data_source != options.suite.data_source:
        raise ValueError(f"{options.out_dir} holds runs on the {results.data_source} data; suite "
                         f"{options.suite.name} now trains on the {options.suite.data_source} data: give this "
                         "run its own --out folder")
    device, peak = probe_device(options.suite, options.workspace)
    recorded = results.environment.device
    if (device.kind, device.name, device.count) != (recorded.kind, recorded.name, recorded.count):
        raise ValueError(f"{options.out_dir} holds runs on {recorded.name} x{recorded.count}; this machine has "
                         f"{device.name} x{device.count}: give this machine its own --out folder")
    log.info("measured %s matmul peak for this call: %.1f TFLOP/s (the folder's first: %.1f)", peak.dtype,
             peak.tflops_median, results.measured_peak.tflops_median)
    results.systems = {name: SYSTEMS[name].description for name in options.suite.systems}
    results.calls.append(new_call(device, peak))
    return results


def case_info(case: BenchCase, model_dir: Path, rows: int, fingerprint: str) -> CaseInfo:
    shape = shape_from_hf_config(model_dir / "config.json")
    lora = case.lora_spec()
    return CaseInfo(
        name=case.name, shape=case.shape, mode=case.mode, seq_length=case.seq_length,
        micro_batch_size=case.micro_batch_size, global_batch_size=case.global_batch_size,
        lora_rank=lora.rank if lora else None, lora_targets=list(case.lora_targets) if lora else None,
        tokens_per_step=case.tokens_per_step, flops_per_token=flops_per_token(shape, case.seq_length, lora),
        data_fingerprint=fingerprint, data_rows=rows,
    )


def run_from_record(case: BenchCase, system: str, suite: Suite, record: dict, wall_s: float) -> SystemRun:
    train = record["train_result"]
    return SystemRun(
        case=case.name, system=system, status="ok", wall_s=wall_s, gpus=max(suite.gpus, 1),
        step_times=train.get("step_times") or [], losses=train.get("losses") or [],
        tokens_per_step=train.get("tokens_per_step"), trainable_params=train.get("trainable_params"),
        total_params=train.get("total_params"), peak_memory_allocated=train.get("peak_memory_allocated"),
        peak_memory_reserved=train.get("peak_memory_reserved"), peak_rss=record.get("peak_rss"),
        planned_memory=record.get("planned_memory") or {}, engine_details=train.get("extra") or {},
    )


def child_env() -> dict[str, str]:
    """The project importable from the training processes' working folder."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def run_system(case: BenchCase, system: str, options: RunOptions, model_dir: Path, data_file: Path,
               timeout_s: float) -> SystemRun:
    """Train one system on one case in its own process and read back what it measured."""
    suite, workspace = options.suite, options.workspace
    run_dir, log_file = workspace.run_dir(case, system), workspace.log_file(case, system)
    values = case_values(case, suite, system, model_dir, data_file, workspace)
    if options.profile:
        values["profiling"] = profile_values(suite, run_dir)
    config, out = write_run_config(values, run_dir), run_dir / "result.json"
    out.unlink(missing_ok=True)
    command = python_command("primus_bridge.bench.worker", ["--config", str(config), "--out", str(out)], suite.gpus)
    log.info("%s / %s: running (log %s)", case.name, system, log_file)
    finished = run_logged(command, log_file, timeout_s, workspace.engine_dir(case.shape), child_env())
    if finished.returncode is None:
        return SystemRun(case=case.name, system=system, status="timeout", wall_s=finished.wall_s,
                         reason=f"stopped after {timeout_s:.0f} s:\n{log_tail(log_file)}")
    if finished.returncode != 0 or not out.is_file():
        return SystemRun(case=case.name, system=system, status="failed", wall_s=finished.wall_s,
                         reason=f"exit code {finished.returncode}:\n{log_tail(log_file)}")
    run = run_from_record(case, system, suite, json.loads(out.read_text()), finished.wall_s)
    if options.profile:
        keep_profile_tables(run_dir, options.out_dir, f"{case.name}-{system}")
        run.device_busy = profiled_device_busy(run_dir)
    return run


def unrunnable(case: BenchCase, system: str, suite: Suite, device: DeviceInfo) -> SystemRun | None:
    """The run as recorded without training where the system cannot run the case here (None: it can): not
    applicable to the case's mode, or skipped where the machine lacks what it needs (a GPU, FP8 matmuls)."""
    spec = SYSTEMS[system]
    if case.mode not in spec.applies_to:
        return SystemRun(case=case.name, system=system, status="not_applicable",
                         reason=f"{system} applies to {' and '.join(spec.applies_to)} cases only, not {case.mode}")
    if spec.needs_gpu and suite.gpus == 0:
        return SystemRun(case=case.name, system=system, status="skipped", reason="needs a GPU; this suite runs on CPU")
    if spec.needs_fp8 and device.fp8_matmul_problem:
        return SystemRun(case=case.name, system=system, status="skipped",
                         reason=f"needs FP8 matmuls: {device.fp8_matmul_problem}")
    return None


PROFILE_ROWS = 100


def profile_values(suite: Suite, run_dir: Path) -> dict:
    """The last warm-up step: compiled and warm, and not among the timed steps. No Chrome trace: exporting
    one step of an 8B model took 40-60 s on the H200, a run's worth of device time; the tables are enough. The
    operations are split by input shape (PROFILE_ROWS rows): an element-wise kernel's row alone does not say which
    tensors it ran over (2026-12-06's 8B FP8 profile: 15% of the step in such rows)."""
    step = max(suite.warmup_steps, 1)
    return {"enabled": True, "start_step": step, "end_step": step, "dir": str(profile_folder(run_dir)),
            "trace": False, "record_shapes": True, "top_ops": PROFILE_ROWS}


def profile_folder(run_dir: Path) -> Path:
    return run_dir / "profile"


def keep_profile_tables(run_dir: Path, out_dir: Path, name: str) -> list[Path]:
    """Copy rank 0's operation table (and device-gap table, on a GPU) into the report's profiles/ folder."""
    kept = []
    for source, kind in ((operation_table_path(profile_folder(run_dir), 0), "ops"),
                         (gaps_table_path(profile_folder(run_dir), 0), "gaps")):
        if source.is_file():
            target = out_dir / "profiles" / f"{name}-{kind}.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, source.read_text())
            kept.append(target)
    if not kept:
        log.warning("%s: no profile was written (%s)", name, profile_folder(run_dir))
    return kept


def profiled_device_busy(run_dir: Path) -> DeviceBusy | None:
    """Rank 0's device busy time over the profiled step (None where the profile has none: on CPU)."""
    path = gaps_summary_path(profile_folder(run_dir), 0)
    if not path.is_file():
        return None
    numbers = json.loads(path.read_text())
    return DeviceBusy(**{key: numbers[key] for key in DeviceBusy.model_fields})


def with_metrics(run: SystemRun, info: CaseInfo, results: BenchResults) -> SystemRun:
    if run.status != "ok":
        return run
    try:
        metrics = compute_metrics(run, info, results.warmup_steps, results.peak_for(run).tflops_median,
                                  results.datasheet_peak_tflops)
    except ValueError as err:
        return run.model_copy(update={"status": "failed", "reason": str(err)})
    return run.model_copy(update={"metrics": metrics})


def render(results: BenchResults, suite: Suite, out_dir: Path) -> None:
    """Check the suite's targets against the runs, then write results.json and every report file."""
    results.targets = [evaluate(target, results) for target in suite.targets]
    write_reports(results, out_dir)


def publish(results: BenchResults, options: RunOptions) -> None:
    """results.json first, so the measurements survive whatever follows; then the targets and the reports.

    A failure in the second part is logged with its traceback and does not stop the suite: the runs still
    to come are worth more than a report, which `bench --render` rewrites later.
    """
    results.updated = now()
    save_results(results, options.out_dir)
    try:
        render(results, options.suite, options.out_dir)
    except Exception:  # noqa: BLE001 - any report bug; results.json is already complete
        log.exception("%s: writing the report failed; results.json holds every run (fix, then bench --render)",
                      options.out_dir)


def start_results(options: RunOptions) -> BenchResults:
    if options.resume and (options.out_dir / RESULTS_FILE).is_file():
        return resumed_results(options)
    return new_results(options.suite, options.workspace)


def pending_systems(results: BenchResults, case: BenchCase, options: RunOptions) -> list[str]:
    def done(system: str) -> bool:
        run = results.run(case.name, system)
        return options.resume and run is not None and run.status in DONE

    # --systems' order when given: a call whose time budget ends early has run the ones named first
    return [system for system in options.systems or options.suite.systems if not done(system)]


def prepare_case(case: BenchCase, results: BenchResults, options: RunOptions) -> tuple[Path, Path, CaseInfo]:
    """(model folder, data file, case info) shared by every system of the case."""
    log_file = options.workspace.root / "logs" / f"{case.name}-prepare.log"
    model_dir = ensure_model(options.workspace, case, options.suite, log_file)
    data_file, rows, fingerprint = prepare_case_data(case, options.suite, model_dir, options.workspace)
    info = case_info(case, model_dir, rows, fingerprint)
    results.put_case(info)
    return model_dir, data_file, info


def record_unrunnable(case: BenchCase, systems: list[str], results: BenchResults, options: RunOptions) -> list[str]:
    """Record the systems that cannot run the case here (see unrunnable); returns the others."""
    runnable = []
    for system in systems:
        recorded = unrunnable(case, system, options.suite, results.environment.device)
        if recorded is None:
            runnable.append(system)
        else:
            log.info("%s / %s: %s (%s)", case.name, system, recorded.status.replace("_", " "), recorded.reason)
            results.put_run(recorded)
    if len(runnable) < len(systems):
        publish(results, options)
    return runnable


def run_case(case: BenchCase, systems: list[str], results: BenchResults, options: RunOptions,
             time_left: Callable[[], float]) -> bool:
    """Run the case's pending systems; False when the time budget stopped it before the end."""
    if time_left() < case.expected_for(systems[0]):
        log.info("%s: not started, the time budget is nearly spent (resume to continue)", case.name)
        return False
    runnable = record_unrunnable(case, systems, results, options)
    if not runnable:
        return True
    try:
        model_dir, data_file, info = prepare_case(case, results, options)
    except (ConfigError, RuntimeError, OSError, ValueError) as err:
        for system in runnable:
            results.put_run(SystemRun(case=case.name, system=system, status="failed", reason=f"preparing: {err}"))
        publish(results, options)
        return True
    for system in runnable:
        if time_left() < case.expected_for(system):
            log.info("%s / %s: not started, the time budget is nearly spent", case.name, system)
            return False
        timeout_s = min(case.timeout_s, time_left())
        run = run_system(case, system, options, model_dir, data_file, timeout_s)
        results.put_run(with_metrics(run, info, results))
        publish(results, options)
    return True


def run_suite(options: RunOptions) -> BenchResults:
    start = time.monotonic()

    def time_left() -> float:
        return float("inf") if options.time_budget_s is None else options.time_budget_s - (time.monotonic() - start)

    results = start_results(options)
    publish(results, options)
    for index, case in enumerate(options.cases):
        systems = pending_systems(results, case, options)
        if systems and not run_case(case, systems, results, options, time_left):
            break
        if all(c.shape != case.shape for c in options.cases[index + 1:]):
            remove_model(options.workspace, case.shape)
    publish(results, options)
    return results
