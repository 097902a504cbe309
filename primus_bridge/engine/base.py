"""The engine interface: every training backend takes the same validated config."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..config import PrimusConfig


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
    extra: dict = field(default_factory=dict)


class Engine(Protocol):
    name: str

    def train(self, cfg: PrimusConfig) -> TrainResult:
        """Fine-tune as the config says; save checkpoints and, with convert_to_hf, export."""

    def export(self, cfg: PrimusConfig, checkpoint: Path, out: Path) -> Path:
        """Write a HF model (and a PEFT adapter for LoRA) from a checkpoint of this engine."""
