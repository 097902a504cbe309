"""PNG plots of a run: throughput bars, memory bars, loss curves (matplotlib's Agg canvas, no display)."""

from io import BytesIO
from pathlib import Path

from ...utils.atomic import atomic_write_bytes
from ..results import BenchResults
from .rows import gib, memory_bytes

THROUGHPUT_PNG = "throughput.png"
MEMORY_PNG = "memory.png"
LOSS_PNG = "loss.png"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _grouped_bars(results: BenchResults, value_of, ylabel: str, title: str, path: Path) -> Path:
    """One group of bars per case, one bar per system; missing runs leave a gap."""
    cases, systems = [c.name for c in results.cases], list(results.systems)
    figure = _figure(max(6.4, 1.6 * len(cases) + 2), 4.2)
    axes = figure.add_subplot()
    width = 0.8 / max(len(systems), 1)
    for index, system in enumerate(systems):
        values = []
        for case in cases:
            run = results.run(case, system)
            values.append(value_of(run) if run is not None and run.status == "ok" else None)
        positions = [i + (index - (len(systems) - 1) / 2) * width for i in range(len(cases))]
        bars = axes.bar(positions, [v or 0 for v in values], width, label=system)
        axes.bar_label(bars, labels=[f"{v:,.0f}" if v and v >= 100 else (f"{v:.3g}" if v else "n/a")
                                     for v in values], fontsize=7)
    axes.set_xticks(range(len(cases)), cases, rotation=20, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def plot_throughput(results: BenchResults, path: Path) -> Path:
    return _grouped_bars(results, lambda run: run.metrics.tokens_per_s_per_gpu if run.metrics else None,
                         "tokens / s / GPU", f"{results.suite}: throughput (timed steps)", path)


def plot_memory(results: BenchResults, path: Path) -> Path:
    on_gpu = results.environment.device.kind != "cpu"
    label = "peak GPU memory allocated (GiB)" if on_gpu else "peak process RSS (GiB)"
    return _grouped_bars(results, lambda run: gib(memory_bytes(run)), label, f"{results.suite}: memory", path)


def plot_losses(results: BenchResults, path: Path) -> Path:
    """One panel per case: the loss of every step of every system (same weights, same batches)."""
    cases = [c.name for c in results.cases] or ["(no cases run yet)"]
    columns = min(3, len(cases))
    rows = (len(cases) + columns - 1) // columns
    figure = _figure(4.2 * columns, 3.0 * rows)
    for index, case in enumerate(cases):
        axes = figure.add_subplot(rows, columns, index + 1)
        plotted = 0
        for system in results.systems:
            run = results.run(case, system)
            if run is not None and run.losses:
                axes.plot(range(1, len(run.losses) + 1), run.losses, marker=".", label=system)
                plotted += 1
        axes.axvline(results.warmup_steps + 0.5, color="grey", linestyle=":", linewidth=1)
        axes.set_title(case, fontsize=9)
        axes.set_xlabel("step", fontsize=8)
        axes.set_ylabel("loss", fontsize=8)
        axes.grid(alpha=0.3)
        if plotted:
            axes.legend(fontsize=7)
    return _save(figure, path)


def write_plots(results: BenchResults, folder: Path) -> list[Path]:
    folder = Path(folder)
    return [plot_throughput(results, folder / THROUGHPUT_PNG), plot_memory(results, folder / MEMORY_PNG),
            plot_losses(results, folder / LOSS_PNG)]
