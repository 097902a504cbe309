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


def describe(target: Target, baseline: str | None = None) -> str:
    subject = f"{target.metric} of {target.subject[1]} on {target.subject[0]}"
    if target.reference is None:
        return f"{subject} {target.op} {target.threshold:g}"
    case, *systems = target.reference
    named = baseline or " or ".join(systems)
    strongest = " (the strongest baseline of " + ", ".join(systems) + ")" if len(systems) > 1 else ""
    return f"{subject} / same of {named} on {case}{strongest} {target.op} {target.threshold:g}"


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def strongest_baseline(target: Target, results: BenchResults, value: float | None) -> tuple[str | None, float | None]:
    """(system, ratio) of the reference system whose ratio is hardest to meet; (None, None) when none ran."""
    case, *systems = target.reference
    ratios = [(system, _ratio(value, _metric(results, case, system, target.metric))) for system in systems]
    ratios = [(system, ratio) for system, ratio in ratios if ratio is not None]
    if not ratios:
        return None, None
    pick = min if target.op == ">=" else max
    return pick(ratios, key=lambda item: item[1])


def evaluate(target: Target, results: BenchResults) -> TargetResult:
    value, baseline = _metric(results, *target.subject, target.metric), None
    if target.reference is not None:
        baseline, value = strongest_baseline(target, results, value)
    met = None if value is None else (value >= target.threshold if target.op == ">=" else value <= target.threshold)
    return TargetResult(title=target.title, description=describe(target, baseline), threshold=target.threshold,
                        op=target.op, value=value, met=met)
