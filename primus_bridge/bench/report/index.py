"""benchmarks/reports/README.md: every committed run with its headline numbers, rebuilt from the runs' results.json."""

from pathlib import Path

from ...utils.atomic import atomic_write_text
from ..results import RESULTS_FILE, BenchResults, load_results
from ..suites import SYSTEMS
from .markdown import fmt, pct, table
from .rows import comparisons

INDEX_FILE = "README.md"
INTRO = """# Benchmark reports

One folder per run, `<date>-<device>-<suite>/`, written by `primus-bridge bench --suite NAME`: `results.json`
(every number), `results.csv`, `report.md` (tables, comparison, targets) and PNG plots. This index is
rebuilt from the folders' `results.json` after every run. Ratios are primus-bridge's megatron engine over
each HF Transformers + PEFT baseline on identical batches: on each case the engine as the one-GPU targets take it,
with its CUDA graph (megatron-graph), where it ran, else the eager engine; options of the engine (megatron-fp8,
megatron-graph) are compared with it in each report. The one-GPU targets are evaluated on the engine with its CUDA
graph (megatron-graph, megatron-fp8-graph) since 2026-12-06's suite-4; the folders before it were rendered with the
eager engine as the targets' subject.
"""


def _case_rows(folder: str, results: BenchResults) -> list[list[str]]:
    found = comparisons(results)
    met = sum(t.met is True for t in results.targets)
    targets = f"{met}/{len(results.targets)} met" if results.targets else "–"
    rows = []
    for case in results.cases:
        cells = []
        for system in results.systems:
            run = results.run(case.name, system)
            m = run.metrics if run is not None and run.status == "ok" else None
            cells.append(f"{system} {fmt(m.tokens_per_s_per_gpu)} ({pct(m.mfu_measured)})" if m else
                         f"{system} {run.status if run else _absent(system, case.mode)}")
        mine = [c for c in found if c.case == case.name]
        rows.append([f"[{folder}]({folder}/report.md)", results.environment.device.name, case.name, " / ".join(cells),
                     _per_baseline(mine, "speed_ratio"), _per_baseline(mine, "memory_ratio"), targets])
    return rows


def _absent(system: str, mode: str) -> str:
    """A system with no run on a case: one that does not apply to the case's mode was never meant to run."""
    spec = SYSTEMS.get(system)
    return "not_applicable" if spec is not None and mode not in spec.applies_to else "not run"


def _per_baseline(found: list, ratio: str) -> str:
    """One ratio against each baseline: '1.37x' with one, 'hf 1.37x, hf-flex 1.10x' with several."""
    if len(found) == 1:
        return fmt(getattr(found[0], ratio), ".2f", "x")
    return ", ".join(f"{c.baseline} {fmt(getattr(c, ratio), '.2f', 'x')}" for c in found) or "–"


def index_text(root: Path) -> str:
    rows = []
    for results_file in sorted(Path(root).glob(f"*/{RESULTS_FILE}"), reverse=True):
        rows += _case_rows(results_file.parent.name, load_results(results_file.parent))
    header = ["run", "device", "case", "tokens/s/GPU (MFU vs measured peak), per system", "speed ratio",
              "memory ratio", "targets"]
    body = table(header, rows) if rows else ["No runs yet."]
    return INTRO + "\n" + "\n".join(body) + "\n"


def write_index(root: Path) -> Path:
    path = Path(root) / INDEX_FILE
    atomic_write_text(path, index_text(root))
    return path
