"""Check a suite's targets against its runs: met, not met, or not measured (a run missing or failed)."""

from .results import BenchResults, TargetResult
from .suites import Target


def _metric(results: BenchResults, case: str, system: str, metric: str) -> float | None:
    run = results.run(case, system)
    if run is None or run.status != "ok" or run.metrics is None:
        return None
    if metric == "peak_memory_allocated":
        return float(run.peak_memory_allocated) if run.peak_memory_allocated else None
    value = getattr(run.metrics, metric)
    return float(value) if value is not None else None


def describe(target: Target) -> str:
    subject = f"{target.metric} of {target.subject[1]} on {target.subject[0]}"
    if target.reference is None:
        return f"{subject} {target.op} {target.threshold:g}"
    reference = f"{target.reference[1]} on {target.reference[0]}"
    return f"{subject} / same of {reference} {target.op} {target.threshold:g}"


def evaluate(target: Target, results: BenchResults) -> TargetResult:
    value = _metric(results, *target.subject, target.metric)
    if value is not None and target.reference is not None:
        base = _metric(results, *target.reference, target.metric)
        value = value / base if base else None
    met = None if value is None else (value >= target.threshold if target.op == ">=" else value <= target.threshold)
    return TargetResult(title=target.title, description=describe(target), threshold=target.threshold, op=target.op,
                        value=value, met=met)
