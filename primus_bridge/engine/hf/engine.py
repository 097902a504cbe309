"""The hf engine: Transformers + PEFT on one node (one process, or several under torchrun with DDP)."""

import logging
from pathlib import Path

from ...config import ConfigError, PrimusConfig
from ...run.result import TrainResult
from ...run.secrets import install_log_redaction
from .distributed import init_distributed, shutdown_distributed
from .export import export_checkpoint
from .setup import build_run
from .trainer import run_training

log = logging.getLogger("primus_bridge")


def quiet_library_progress() -> None:
    """Our own progress bar is the one on screen: turn off transformers' per-file load/save bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class HFEngine:
    name = "hf"

    def train(self, cfg: PrimusConfig) -> TrainResult:
        install_log_redaction(log)
        quiet_library_progress()
        env = init_distributed()
        try:
            run = build_run(cfg, env)
            log.info("hf engine: %s, %s attention, %s | %s, %d process(es) on %s",
                     "LoRA" if run.loaded.is_lora else "full fine-tune", run.loaded.attn_implementation,
                     f"{run.loaded.trainable_params:,} of {run.loaded.total_params:,} params trainable",
                     run.precision.why, env.world_size, env.device)
            return run_training(run)
        finally:
            shutdown_distributed(env)

    def export(self, cfg: PrimusConfig, checkpoint: Path, out: Path) -> Path:
        install_log_redaction(log)
        quiet_library_progress()
        return export_checkpoint(checkpoint, out, cfg.checkpointing.overwrite)

    def import_hf(self, cfg: PrimusConfig, out: Path) -> Path:
        raise ConfigError("engine: the hf engine trains from the HF model itself (--hf_model_name_or_path) and has "
                          "nothing to import; --convert_from_hf in convert writes a Megatron checkpoint: drop "
                          "--engine hf, or train with the hf engine without converting")
