"""The engine interface: every training backend takes the same validated config."""

from pathlib import Path
from typing import Protocol

from ..config import PrimusConfig
from ..run.result import TrainResult


class Engine(Protocol):
    name: str

    def train(self, cfg: PrimusConfig) -> TrainResult:
        """Fine-tune as the config says; save checkpoints and, with convert_to_hf, export."""

    def export(self, cfg: PrimusConfig, checkpoint: Path, out: Path) -> Path:
        """Write a HF model (and a PEFT adapter for LoRA) from a checkpoint of this engine; its marker last."""

    def import_hf(self, cfg: PrimusConfig, out: Path) -> Path:
        """Write the HF model `cfg.hf_model_name_or_path` as a checkpoint this engine starts from, at `out`.

        ConfigError for an engine that trains from HF models directly and has no checkpoint format to import to.
        """
