"""The megatron engine: post-training through Megatron-Bridge's finetune() on Megatron-Core.

Importing this package imports nothing of Megatron. Each call first runs `prepare_megatron()`
(the compat registry's adaptations: Megatron-Bridge imported with TE placeholders where TransformerEngine is
absent, then the library replacements), then the runner.
"""

from pathlib import Path

from ...config import PrimusConfig
from ...run.result import TrainResult


def _runner():
    from .runtime import prepare_megatron

    prepare_megatron()
    from .engine import MegatronBridgeRunner

    return MegatronBridgeRunner()


class MegatronEngine:
    name = "megatron"

    def train(self, cfg: PrimusConfig) -> TrainResult:
        return _runner().train(cfg)

    def export(self, cfg: PrimusConfig, checkpoint: Path, out: Path) -> Path:
        return _runner().export(cfg, checkpoint, out)

    def import_hf(self, cfg: PrimusConfig, out: Path) -> Path:
        return _runner().import_hf(cfg, out)


ENGINE = MegatronEngine()

__all__ = ["ENGINE", "MegatronEngine"]
