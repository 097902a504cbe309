"""Run report: `train_result.json`, a Markdown summary and a PNG loss curve (matplotlib's Agg canvas)."""

import dataclasses
import json
import logging
import math
import os
from io import BytesIO
from collections.abc import Sequence
from pathlib import Path

from ..utils.atomic import atomic_write_bytes, atomic_write_text
from .result import TrainResult
from .secrets import redact

RESULT_FILE = "train_result.json"
REPORT_FILE = "report.md"
CURVE_FILE = "loss_curve.png"


def result_to_json(result: TrainResult) -> dict:
    data = dataclasses.asdict(result)
    return json.loads(json.dumps(data, default=str))


def result_from_json(data: dict) -> TrainResult:
    names = {f.name for f in dataclasses.fields(TrainResult)}
    return TrainResult(**{k: v for k, v in data.items() if k in names})


def read_result(folder: str | Path) -> TrainResult:
    return result_from_json(json.loads((Path(folder) / RESULT_FILE).read_text()))


def loss_drop(losses: Sequence[float], window: int = 5) -> tuple[float, float, float]:
    """(start, end, fractional drop): means of the first and last `window` steps, so one noisy step does not decide.

    Steps skipped for a non-finite loss (training.skip_nonfinite_steps) are left out.
    """
    losses = [loss for loss in losses if math.isfinite(loss)]
    if not losses:
        raise ValueError("no losses recorded")
    window = max(1, min(window, len(losses) // 2 or 1))
    start = sum(losses[:window]) / window
    end = sum(losses[-window:]) / window
    return start, end, (start - end) / start if start else 0.0


def plot_loss_curve(result: TrainResult, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(range(1, len(result.losses) + 1), result.losses, label="train loss")
    evals = result.extra.get("eval_losses") or {}
    if evals:
        steps = sorted(evals, key=int)
        axes.plot([int(s) for s in steps], [evals[s] for s in steps], "o-", label="valid loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}{unit}" if abs(value) >= 100 else f"{value:.4g}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def summary_rows(result: TrainResult) -> list[tuple[str, str]]:
    """(name, value) rows shared by the terminal summary table and the Markdown report."""
    rows = [("engine", result.engine), ("steps", _fmt(result.steps_done))]
    if any(math.isfinite(loss) for loss in result.losses):
        start, end, drop = loss_drop(result.losses)
        rows += [("loss (first -> last 5 steps)", f"{start:.4f} -> {end:.4f} ({-drop:+.1%})")]
    evals = result.extra.get("eval_losses") or {}
    if evals:
        last = max(evals, key=int)
        rows.append((f"valid loss (step {last})", f"{evals[last]:.4f}"))
    rows += [("tokens/s", _fmt(result.tokens_per_second)),
             ("trainable / total params", f"{_fmt(result.trainable_params)} / {_fmt(result.total_params)}"),
             ("peak GPU memory", _fmt(result.peak_memory_allocated and result.peak_memory_allocated / 2**30, " GiB")),
             ("preempted", "yes" if result.preempted else "no"),
             ("checkpoint", _fmt(result.checkpoint_dir)), ("HF export", _fmt(result.export_dir))]
    return rows


def format_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name.ljust(width)}  {value}" for name, value in rows)


def markdown_report(result: TrainResult, title: str, sections: Sequence[tuple[str, str]] = ()) -> str:
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in summary_rows(result)]
    if result.losses:
        lines += ["", "## Loss", "", f"![loss curve]({CURVE_FILE})"]
    for heading, body in sections:
        lines += ["", f"## {heading}", "", body]
    return "\n".join(lines) + "\n"


def write_run_report(folder: str | Path, result: TrainResult, title: str = "Training run",
                     sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Write train_result.json, report.md and loss_curve.png into `folder`; returns the report path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / RESULT_FILE, redact(json.dumps(result_to_json(result), indent=2)) + "\n")
    if result.losses:
        plot_loss_curve(result, folder / CURVE_FILE)
    atomic_write_text(folder / REPORT_FILE, redact(markdown_report(result, title, sections)))
    return folder / REPORT_FILE


def finish_run(save: str | None, result: TrainResult) -> Path | None:
    """On the main process: log the summary table and write the report beside the checkpoints (when saving)."""
    if os.environ.get("RANK", "0") != "0":
        return None
    logging.getLogger("primus_bridge").info("run summary\n%s", format_table(summary_rows(result)))
    return write_run_report(save, result) if save else None
