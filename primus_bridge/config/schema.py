"""The one config schema: the user contract's YAML layout, section by section."""

from typing import Literal

from pydantic import Field, field_validator

from ..hardware import GPU_TYPES
from .sections.base import Section
from .sections.checkpointing import CheckpointConfig
from .sections.data import DataConfig
from .sections.logging import LoggingConfig
from .sections.lora import LoraConfig
from .sections.model import ModelConfig
from .sections.parallelism import ParallelismConfig
from .sections.precision import PrecisionConfig
from .sections.profiling import ProfilingConfig
from .sections.recompute import RecomputeConfig
from .sections.training import TrainingConfig

FRAMEWORK = "megatron_bridge"


class PrimusConfig(Section):
    framework: str = FRAMEWORK
    """Training backend; primus-bridge does post-training on Megatron-Bridge only (flag --framework)."""
    engine: Literal["auto", "megatron", "hf"] = "auto"
    """auto: megatron when GPUs are visible and Megatron-Bridge imports, else hf (flag --engine)."""
    recipe: str | None = None
    """Start from a recipe module in recipes/ (flag --recipe); your keys override it."""
    gpu: str | None = None
    """GPU type for recipe settings and the memory planner: one of primus_bridge.hardware.GPU_TYPES (mi300x, mi325x,
    mi355x, h100, h200, b200; flag --gpu)."""
    force: bool = False
    """Start even when the memory planner predicts the run does not fit (flag --force)."""
    convert_from_hf: bool = False
    """Import the starting weights from the HF model at hf_model_name_or_path (flag --convert_from_hf)."""
    hf_model_name_or_path: str | None = None
    """HF model: a local folder, or a hub id present in the local HF cache (flag --hf_model_name_or_path)."""
    convert_to_hf: bool = False
    """Export the result as a HF model (and PEFT adapter for LoRA) to hf_save_path (flag --convert_to_hf)."""
    hf_save_path: str | None = None
    """Folder for the HF export (flag --hf_save_path)."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    precision: PrecisionConfig = Field(default_factory=PrecisionConfig)
    parallelism: ParallelismConfig = Field(default_factory=ParallelismConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    checkpointing: CheckpointConfig = Field(default_factory=CheckpointConfig)
    activation_checkpointing: RecomputeConfig = Field(default_factory=RecomputeConfig)
    profiling: ProfilingConfig = Field(default_factory=ProfilingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, value: str | None) -> str | None:
        if value is not None and value not in GPU_TYPES:
            raise ValueError(f"{value!r} is not a GPU type primus-bridge has numbers for; use one of "
                             f"{', '.join(GPU_TYPES)}, or leave it unset (detected from the machine)")
        return value

    @field_validator("framework")
    @classmethod
    def _post_training_only(cls, value: str) -> str:
        if value != FRAMEWORK:
            raise ValueError(
                f"framework {value!r} is not supported: primus-bridge does post-training (SFT, LoRA, "
                f"chat tuning) on Megatron-Bridge; use framework: {FRAMEWORK}. Pre-training belongs to "
                "another backend (Primus megatron or torchtitan)."
            )
        return value

    @property
    def mode(self) -> str:
        """'lora' or 'sft': the recipe and planner key."""
        return "lora" if self.lora.use_lora else "sft"
