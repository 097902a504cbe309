"""report.md: environment, ceilings, the method, the results table, the comparison, targets and plots."""

from pathlib import Path

from ...utils.atomic import atomic_write_text
from ..anchors import ANCHORS
from ..results import BenchResults, SystemRun
from ..text_process import DESCRIPTION as TEXT_PROCESS_DESCRIPTION
from .plots import LOSS_PNG, MEMORY_PNG, THROUGHPUT_PNG
from .rows import Comparison, comparisons, gib, memory_bytes, variant_comparisons

NOTES_FILE = "notes.md"
"""Hand-written findings kept beside a run's report (what was changed, what it gained); included verbatim."""


def fmt(value, spec: str = ",.0f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def pct(value: float | None) -> str:
    return fmt(None if value is None else 100 * value, ".1f", "%")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def environment_section(results: BenchResults) -> list[str]:
    env, device = results.environment, results.environment.device
    libraries = ", ".join(f"{name} {version or 'absent'}" for name, version in env.libraries.items())
    gpu = f"{device.name} x{device.count}" if device.kind == "cuda" else f"CPU: {device.name} ({env.cpu_count} cores)"
    if device.memory_bytes:
        gpu += f", {device.memory_bytes / 1024**3:.0f} GiB, compute capability {device.capability}"
    runtime = f"built for CUDA {env.torch_cuda}" if env.torch_cuda else \
        (f"built for HIP {env.torch_hip}" if env.torch_hip else "CPU build")
    first = results.calls[0]
    revision = f"{first.revision or 'unknown'}{' (uncommitted changes)' if first.dirty else ''}"
    rows = [["device", gpu], ["driver", env.driver or "–"], ["torch", f"{env.libraries.get('torch')} ({runtime})"],
            ["libraries", libraries], ["python / platform", f"{env.python} / {env.platform}"],
            ["code revision" + (" (first call; every call's in Method)" if len(results.calls) > 1 else ""), revision]]
    return ["## Environment", ""] + table(["", ""], rows)


def _versus_datasheet(tflops: float, datasheet: float | None) -> str:
    return f" ({tflops / datasheet:.0%} of the datasheet's {datasheet:g})" if datasheet else \
        " (no datasheet peak for this device)"


def calls_section(results: BenchResults) -> list[str]:
    """One row per call of the harness on this folder: where a suite was resumed on other machines, each run's MFU
    is against the peak measured by its own call."""
    rows = [[str(index + 1), call.started, call.device,
             f"{call.revision or 'unknown'}{' (uncommitted)' if call.dirty else ''}",
             f"{call.measured_peak.tflops_median:,.4g}", fmt(sum(run.call == index for run in results.runs))]
            for index, call in enumerate(results.calls)]
    return ["- Calls of the harness on this folder; each run's MFU is against the matmul peak measured in its own "
            "call (the Results table's last column):", ""] + table(
        ["call", "started", "device", "code revision", "measured peak TFLOP/s", "runs"], rows)


def method_section(results: BenchResults) -> list[str]:
    peak = results.calls[0].measured_peak
    lines = ["## Method", "",
             f"- Each system runs every case in a fresh process: {results.warmup_steps} warm-up + "
             f"{results.timed_steps} timed optimizer steps on the same random-weight checkpoint and the same packed "
             f"rows (the data fingerprint below), {results.precision}.",
             *([f"- Data: {TEXT_PROCESS_DESCRIPTION}."] if results.data_source == "text-process" else []),
             "- tokens/s/GPU = global batch x seq_length / mean timed step time / GPUs. Step time p50/p90 over the "
             "timed steps.",
             f"- {results.flops_formula}",
             "- MFU = model TFLOP/s per GPU / peak: against the matmul peak measured here and against the datasheet.",
             f"- Measured peak{' (first call)' if len(results.calls) > 1 else ''}: {peak.describe()}: "
             f"{peak.tflops_median:,.4g} TFLOP/s median of {peak.repeats} (max {peak.tflops_max:,.4g})"
             f"{_versus_datasheet(peak.tflops_median, results.datasheet_peak_tflops)}."]
    return lines + ([""] + calls_section(results) if len(results.calls) > 1 else [])


DETAIL_KEYS_SKIPPED = ("eval_losses", "first_step")


def systems_section(results: BenchResults) -> list[str]:
    """What each system is, and the engine settings its runs reported (attention kernel, precision, ...)."""
    lines = ["## Systems", ""]
    for system, description in results.systems.items():
        details: dict[str, set[str]] = {}
        for run in results.runs:
            if run.system == system:
                for key, value in run.engine_details.items():
                    if key not in DETAIL_KEYS_SKIPPED:
                        details.setdefault(key, set()).add(str(value).removeprefix(f"{key}: "))
        seen = "; ".join(f"{key}: {', '.join(sorted(values))}" for key, values in sorted(details.items()))
        lines.append(f"- **{system}**: {description}{f' ({seen})' if seen else ''}")
    return lines


def _result_row(run: SystemRun) -> list[str]:
    m = run.metrics
    if run.status != "ok" or m is None:
        return [run.case, run.system] + ["–"] * 8 + [run.status.replace("_", " ")]
    loss = f"{fmt(m.loss_first, '.3f')} → {fmt(m.loss_last, '.3f')}"
    return [run.case, run.system, fmt(m.tokens_per_s_per_gpu), fmt(m.model_tflops_per_gpu, ".4g"),
            pct(m.mfu_measured), pct(m.mfu_datasheet), fmt(m.step_time_p50_s, ".3f"), fmt(m.step_time_p90_s, ".3f"),
            f"{fmt(gib(memory_bytes(run)), '.1f')} / {fmt(gib(run.peak_memory_reserved), '.1f')}", loss, "ok"]


def _call_column(run: SystemRun) -> list[str]:
    return [str(run.call + 1) if run.call is not None else "–"]


def results_section(results: BenchResults) -> list[str]:
    order = {c.name: i for i, c in enumerate(results.cases)}
    runs = sorted(results.runs, key=lambda r: (order.get(r.case, len(order)), list(results.systems).index(r.system)))
    memory = "peak mem GiB (alloc / reserved)" if results.environment.device.kind != "cpu" else "peak RSS GiB / –"
    header = ["case", "system", "tokens/s/GPU", "TFLOP/s/GPU", "MFU (measured)", "MFU (datasheet)", "step p50 s",
              "step p90 s", memory, "loss first → last", "status"]
    several_calls = len(results.calls) > 1
    rows = [_result_row(run) + (_call_column(run) if several_calls else []) for run in runs]
    cases = [[c.name, c.shape, c.mode, str(c.seq_length), f"{c.micro_batch_size} / {c.global_batch_size}",
              fmt(c.tokens_per_step), fmt(c.flops_per_token / 1e9, ".4g"), (c.data_fingerprint or "–")[:12]]
             for c in results.cases]
    return (["## Cases", ""] + table(["case", "shape", "mode", "seq", "micro / global batch", "tokens/step",
                                      "GFLOP/token", "data sha256"], cases)
            + ["", "## Results", ""] + table(header + (["call"] if several_calls else []), rows))


def device_busy_section(results: BenchResults) -> list[str]:
    """The profiled runs (--profile): how much of the profiled step the GPU was busy. Well below 100%, the step is
    bound by the host (launches, Python, data loading, syncs), not by the kernels the other tables count."""
    profiled = [run for run in results.runs if run.device_busy is not None]
    if not profiled:
        return []
    rows = [[run.case, run.system, fmt(busy.window_ms, ",.1f"), fmt(busy.busy_ms, ",.1f"), pct(busy.busy_fraction),
             f"{busy.host_syncs} ({busy.host_sync_ms:.1f} ms)"] for run in profiled for busy in [run.device_busy]]
    return (["", "## GPU busy in the profiled step", "",
             "The last warm-up step of each profiled run (not timed; the profiler slows the host, so this is a lower "
             "bound of the timed steps' busy share). Tables in profiles/.", ""]
            + table(["case", "system", "step window ms", "GPU busy ms", "GPU busy", "host syncs"], rows))


def _planned_row(run: SystemRun) -> list[str]:
    plan, measured = run.planned(), run.peak_memory_allocated
    values = (plan.weights, plan.trainable_state, plan.activations, plan.logits, plan.tensors)
    parts = [fmt(gib(int(value)), ".1f") for value in values]
    return [run.case, run.system, *parts, fmt(gib(measured), ".1f"),
            fmt(measured / plan.tensors if measured and plan.tensors else None, ".2f", "x")]


def planned_memory_section(results: BenchResults) -> list[str]:
    """Where the megatron engine's memory goes: the planner's parts (primus-bridge plan) beside the measured peak."""
    planned = [run for run in results.runs if run.status == "ok" and run.planned() is not None]
    if not planned:
        return []
    header = ["case", "system", "weights", "trainable state", "activations", "logits", "planned tensors",
              "measured alloc", "measured / planned"]
    return (["", "## Memory by part (GiB): the planner's parts beside the measured peak", "",
             "What `primus-bridge plan` counts for each megatron run's own config on this card: the frozen or "
             "trained weights, the trainable state (gradients, optimizer states, LoRA adapters with theirs, "
             "Adam's step excess), the activations kept for the backward and the loss's logits. Planned tensors are "
             "their sum, the figure comparable with PyTorch's peak allocated memory.", ""]
            + table(header, [_planned_row(run) for run in planned]))


def _comparison_table(found: list[Comparison], with_subject: bool = False) -> list[str]:
    rows = [[c.case, *([c.subject] if with_subject else []), c.baseline, fmt(c.speed_ratio, ".2f", "x"),
             fmt(c.memory_ratio, ".2f", "x"), f"{fmt(c.loss_first[0], '.4f')} / {fmt(c.loss_first[1], '.4f')}"]
            for c in found]
    header = ["case", *(["system"] if with_subject else []), "vs", "speed ratio", "memory ratio",
              "first-step loss (this / other)"]
    return table(header, rows)


def comparison_section(results: BenchResults) -> list[str]:
    found = comparisons(results)
    if not found:
        return []
    subjects = list(dict.fromkeys(c.subject for c in found))
    return (["", f"## {' / '.join(subjects)} vs each baseline (same batches)", "",
             f"Speed ratio: {' or '.join(subjects)} tokens/s over the baseline's (on each case the engine as the "
             "targets take it where it ran, `model.cuda_graph` on one GPU); memory ratio: peak memory over the "
             "baseline's. Both start from the same weights on the same first batch, so their first-step losses "
             "should agree.", ""]
            + _comparison_table(found, with_subject=len(subjects) > 1))


def variant_section(results: BenchResults) -> list[str]:
    """Each option of the engine (e.g. megatron-fp8) against the engine without it."""
    lines, every = [], variant_comparisons(results)
    for subject in dict.fromkeys(c.subject for c in every):
        found = [c for c in every if c.subject == subject]
        lines += ["", f"## {subject} vs {found[0].baseline} (same batches)", "",
                  f"Speed ratio: {subject} tokens/s over {found[0].baseline}'s; memory ratio: peak memory over "
                  f"{found[0].baseline}'s; first-step losses on the same weights and batch.", ""]
        lines += _comparison_table(found)
    return lines


def targets_section(results: BenchResults) -> list[str]:
    if not results.targets:
        return []
    verdict = {True: "**met**", False: "**not met**", None: "not measured"}
    rows = [[t.title, fmt(t.value, ".3f"), f"{t.op} {t.threshold:g}", verdict[t.met],
             t.description + (f" ({t.detail})" if t.detail else "")] for t in results.targets]
    met = sum(t.met is True for t in results.targets)
    missed = [t.title for t in results.targets if t.met is False]
    unmeasured = [t.title for t in results.targets if t.met is None]
    summary = f"Targets met: {met} of {len(results.targets)}."
    summary += f" Not met: {'; '.join(missed)}." if missed else ""
    summary += f" Not measured (a run missing or failed): {'; '.join(unmeasured)}." if unmeasured else ""
    return ["", "## Targets", "", summary, ""] + table(["target", "value", "target", "verdict", "definition"], rows)


def problems_section(results: BenchResults) -> list[str]:
    lines = []
    for run in results.runs:
        if run.status in ("failed", "timeout"):
            lines += ["", f"### {run.case} / {run.system}: {run.status}", "", "```", (run.reason or "").strip(), "```"]
        elif run.status in ("skipped", "not_applicable"):
            lines += ["", f"- {run.case} / {run.system}: {run.status.replace('_', ' ')} ({run.reason})"]
    return ["", "## Skipped, not applicable and failed runs"] + lines if lines else []


def anchors_section() -> list[str]:
    rows = [[a.what, a.hardware, a.number, a.source] for a in ANCHORS]
    return ["", "## Published numbers (context; not measured here)", ""] + table(
        ["what", "hardware", "number", "source"], rows)


def markdown_text(results: BenchResults, notes: str | None = None) -> str:
    device = results.environment.device
    title = f"# Benchmark `{results.suite}` on {device.name} ({results.started[:10]})"
    lines = [title, "", results.description + ".", "", f"Updated {results.updated}.", ""]
    lines += environment_section(results) + [""] + systems_section(results) + [""] + method_section(results)
    lines += [""] + results_section(results) + device_busy_section(results) + planned_memory_section(results)
    lines += comparison_section(results) + variant_section(results) + targets_section(results)
    lines += ["", "## Plots", "", f"![throughput]({THROUGHPUT_PNG})", "", f"![memory]({MEMORY_PNG})", "",
              f"![loss]({LOSS_PNG})"]
    lines += problems_section(results) + anchors_section()
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    return "\n".join(lines) + "\n"


def write_markdown(results: BenchResults, path: Path) -> Path:
    notes_path = path.parent / NOTES_FILE
    notes = notes_path.read_text(encoding="utf-8") if notes_path.is_file() else None
    atomic_write_text(path, markdown_text(results, notes))
    return path
