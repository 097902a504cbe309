"""Report files of a benchmark run: results.json (every number), results.csv, report.md and PNG plots."""

from pathlib import Path

from ..results import BenchResults, save_results
from .csv_table import write_csv
from .markdown import write_markdown
from .plots import write_plots

CSV_FILE = "results.csv"
MARKDOWN_FILE = "report.md"


def write_reports(results: BenchResults, folder: Path) -> list[Path]:
    """Write every report file of one run folder; returns their paths."""
    folder = Path(folder)
    paths = [save_results(results, folder), write_csv(results, folder / CSV_FILE)]
    paths += write_plots(results, folder)
    paths.append(write_markdown(results, folder / MARKDOWN_FILE))
    return paths
