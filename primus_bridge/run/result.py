"""What a training run reports: the engines fill it in, the run report and the benchmark harness read it."""

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainResult:
    """What a finished (or preempted) run reports back to the CLI and the benchmark harness."""

    engine: str
    steps_done: int
    losses: list[float] = field(default_factory=list)
    tokens_per_second: float | None = None
    checkpoint_dir: Path | None = None
    export_dir: Path | None = None
    preempted: bool = False
    step_times: list[float] = field(default_factory=list)
    """Wall-clock seconds of each optimizer step run in this process (warm-up included; the harness drops it)."""
    tokens_per_step: int | None = None
    """Token slots per optimizer step (global batch x seq_length)."""
    trainable_params: int | None = None
    total_params: int | None = None
    peak_memory_allocated: int | None = None
    """Bytes, from torch.cuda.max_memory_allocated on GPU (None on CPU)."""
    peak_memory_reserved: int | None = None
    extra: dict = field(default_factory=dict)
