"""Flat per-run rows and the system comparison, shared by the CSV, Markdown and index writers."""

from dataclasses import dataclass

from ..results import BenchResults, CaseInfo, SystemRun
from ..suites import SYSTEMS, TARGET_SUBJECT

GIB = 1024**3


def gib(value: int | None) -> float | None:
    return value / GIB if value else None


def memory_bytes(run: SystemRun) -> int | None:
    """Peak GPU memory allocated; the process's peak RSS on CPU."""
    return run.peak_memory_allocated or run.peak_rss


def run_row(run: SystemRun, case: CaseInfo | None) -> dict:
    """Every number of one run, flat (one CSV row)."""
    metrics = run.metrics.model_dump() if run.metrics else {}
    case_fields = case.model_dump(exclude={"lora_targets", "data_fingerprint", "name"}) if case else {}
    return {
        "case": run.case, "system": run.system, "status": run.status, **case_fields,
        **{key: metrics.get(key) for key in (
            "tokens_per_s_per_gpu", "model_tflops_per_gpu", "mfu_measured", "mfu_datasheet", "step_time_mean_s",
            "step_time_p50_s", "step_time_p90_s", "loss_first", "loss_last", "warmup_steps", "timed_steps")},
        "peak_memory_allocated_gib": gib(run.peak_memory_allocated),
        "peak_memory_reserved_gib": gib(run.peak_memory_reserved),
        "peak_rss_gib": gib(run.peak_rss),
        "trainable_params": run.trainable_params, "total_params": run.total_params, "gpus": run.gpus,
        "wall_s": run.wall_s, "reason": (run.reason or "").splitlines()[0] if run.reason else None,
    }


@dataclass(frozen=True)
class Comparison:
    """Subject system vs baseline system on one case (identical batches)."""

    case: str
    subject: str
    baseline: str
    speed_ratio: float | None
    memory_ratio: float | None
    loss_first: tuple[float | None, float | None]


def _ok(run: SystemRun | None) -> bool:
    return run is not None and run.status == "ok" and run.metrics is not None


def compare(results: BenchResults, case: str, subject: str, baseline: str) -> Comparison:
    a, b = results.run(case, subject), results.run(case, baseline)
    speed = memory = None
    if _ok(a) and _ok(b):
        speed = a.metrics.tokens_per_s_per_gpu / b.metrics.tokens_per_s_per_gpu
        mem_a, mem_b = memory_bytes(a), memory_bytes(b)
        memory = mem_a / mem_b if mem_a and mem_b else None
    losses = (a.metrics.loss_first if _ok(a) else None, b.metrics.loss_first if _ok(b) else None)
    return Comparison(case, subject, baseline, speed, memory, losses)


def _role(system: str) -> str:
    spec = SYSTEMS.get(system)
    return "baseline" if spec is not None and spec.baseline else ("variant" if spec and spec.variant_of else "ours")


def _attempted(results: BenchResults, case: str, system: str) -> bool:
    """Ran on the case, or failed or was skipped trying; not where it never ran or does not apply."""
    run = results.run(case, system)
    return run is not None and run.status != "not_applicable"


def _pairs(results: BenchResults, pairs: list[tuple[str, str]]) -> list[Comparison]:
    """Each (subject, baseline) pair on each case where both were attempted."""
    return [compare(results, case.name, subject, baseline) for case in results.cases for subject, baseline in pairs
            if _attempted(results, case.name, subject) and _attempted(results, case.name, baseline)]


def comparison_subject(results: BenchResults, case: str) -> str | None:
    """Who faces the HF baselines on a case: the one-GPU targets' subject (TARGET_SUBJECT, the engine as it runs
    fastest on one GPU) where it was attempted there, else the suite's own engine (its first system that is neither
    an HF baseline nor a variant of another system)."""
    if TARGET_SUBJECT in results.systems and _attempted(results, case, TARGET_SUBJECT):
        return TARGET_SUBJECT
    return next((system for system in results.systems if _role(system) == "ours"), None)


def comparisons(results: BenchResults) -> list[Comparison]:
    """`comparison_subject` against each HF + PEFT baseline, case by case; a baseline that never ran on a case (not
    even a failed attempt) has no row there."""
    baselines = [system for system in results.systems if _role(system) == "baseline"]
    found = []
    for case in results.cases:
        subject = comparison_subject(results, case.name)
        if subject is not None and _attempted(results, case.name, subject):
            found += [compare(results, case.name, subject, baseline) for baseline in baselines
                      if _attempted(results, case.name, baseline)]
    return found


def variant_comparisons(results: BenchResults) -> list[Comparison]:
    """Each variant system (an option of another, e.g. megatron-fp8 of megatron) against the system it varies."""
    pairs = [(system, SYSTEMS[system].variant_of) for system in results.systems if _role(system) == "variant"]
    return _pairs(results, [(variant, base) for variant, base in pairs if base in results.systems])
