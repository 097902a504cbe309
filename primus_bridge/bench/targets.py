"""Check a suite's targets against its runs: met, not met, or not measured (a run missing or failed)."""

from ..hardware import GIB
from .metrics import loss_curve_gap
from .results import BenchResults, SystemRun, TargetResult
from .suites import LOSS_CURVE_METRICS, Target


def _metric(results: BenchResults, case: str, system: str, metric: str) -> float | None:
    run = results.run(case, system)
    if run is None or run.status != "ok" or run.metrics is None:
        return None
    if metric == "peak_memory_allocated":
        return float(run.peak_memory_allocated) if run.peak_memory_allocated else None
    value = getattr(run.metrics, metric)
    return float(value) if value is not None else None


def describe(target: Target, baseline: str | None = None) -> str:
    if target.metric in LOSS_CURVE_METRICS:
        return describe_loss_curve(target)
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


def describe_loss_curve(target: Target) -> str:
    (case, system), (reference_case, reference) = target.subject, target.reference
    where = case if case == reference_case else f"{case} and {reference_case}"
    return (f"losses of {system} and {reference} on {where} (same weights, same batches), timed steps (after the "
            f"warm-up) in consecutive windows of {target.window_steps}: max over windows of |mean loss of {system} "
            f"- mean loss of {reference}| / mean loss of {reference} {target.op} {target.threshold:g}")


def _ok_run(results: BenchResults, case: str, system: str) -> SystemRun | None:
    run = results.run(case, system)
    return run if run is not None and run.status == "ok" and run.losses else None


def evaluate_loss_curve(target: Target, results: BenchResults) -> TargetResult:
    """The largest window gap between the subject's loss curve and the reference's; not measured where either run
    is missing, failed or recorded other steps."""
    subject, reference = _ok_run(results, *target.subject), _ok_run(results, *target.reference)
    value = detail = None
    if subject is not None and reference is not None:
        try:
            gap = loss_curve_gap(subject.losses, reference.losses, results.warmup_steps + 1, target.window_steps)
            value, detail = gap.max_window_gap, gap.describe()
        except ValueError as err:
            detail = f"not comparable: {err}"
    return TargetResult(title=target.title, description=describe_loss_curve(target), threshold=target.threshold,
                        op=target.op, value=value, met=_met(target, value), detail=detail)


def _met(target: Target, value: float | None) -> bool | None:
    if value is None:
        return None
    return value >= target.threshold if target.op == ">=" else value <= target.threshold


def memory_budget(target: Target, results: BenchResults, baseline: str | None) -> str | None:
    """For a peak-memory ratio target whose subject ran with a plan: what the memory the target allows leaves for
    activations and logits once the weights and trainable state (which no setting of the run shrinks) are in, beside
    what the run's activations and logits are planned at."""
    if target.metric != "peak_memory_allocated" or baseline is None:
        return None
    run, reference = results.run(*target.subject), _metric(results, target.reference[0], baseline, target.metric)
    plan = run.planned() if run is not None else None
    if plan is None or reference is None:
        return None
    allowed, fixed = target.threshold * reference, plan.weights + plan.trainable_state
    return (f"{target.threshold:g}x {baseline}'s peak allows {allowed / GIB:.1f} GiB; the planned weights and "
            f"trainable state take {fixed / GIB:.1f}, leaving {(allowed - fixed) / GIB:.1f} GiB for activations and "
            f"logits, which this run plans at {(plan.activations + plan.logits) / GIB:.1f} GiB")


def evaluate(target: Target, results: BenchResults) -> TargetResult:
    if target.metric in LOSS_CURVE_METRICS:
        return evaluate_loss_curve(target, results)
    value, baseline = _metric(results, *target.subject, target.metric), None
    if target.reference is not None:
        baseline, value = strongest_baseline(target, results, value)
    return TargetResult(title=target.title, description=describe(target, baseline), threshold=target.threshold,
                        op=target.op, value=value, met=_met(target, value),
                        detail=memory_budget(target, results, baseline))
