"""`profiling:` — a torch.profiler trace of a few training steps, and a table of the costliest operations."""

from pydantic import Field

from .base import Section


class ProfilingConfig(Section):
    enabled: bool = False
    """Profile steps start_step..end_step on every rank (CPU, and CUDA/HIP when present)."""
    start_step: int = Field(default=3, ge=1)
    """First profiled optimizer step (counted from 1; leave the first steps for warm-up and compilation)."""
    end_step: int = Field(default=3, ge=1)
    """Last profiled optimizer step (inclusive)."""
    dir: str | None = None
    """Where `rank-<R>.json.gz` (Chrome / Perfetto trace), `ops-rank<R>.txt` and `gaps-rank<R>.txt` go; default
    <checkpointing.save>/profile, else ./profile."""
    trace: bool = True
    """Write the Chrome / Perfetto trace (exporting a large step takes tens of seconds; the tables are
    written either way)."""
    record_shapes: bool = False
    """Record input shapes (bigger trace; the table then splits operations by shape)."""
    top_ops: int = Field(default=40, ge=1)
    """Rows of the operation table, by self device time (self CPU time without a GPU)."""
