"""The planner's input besides the model: how the run is split over GPUs, batched and optimised.

A plain frozen dataclass (not the config) so that the advice search can vary one field at a time
with `dataclasses.replace` and re-plan.
"""

from dataclasses import dataclass
from typing import Literal

from ..config import PrimusConfig
from ..config.head_loss import chunked_min_vocab, head_loss_mode
from ..models.lora import LoraSpec

Recompute = Literal["none", "full", "selective"]


@dataclass(frozen=True)
class Layout:
    world_size: int
    gpus_per_node: int
    tp: int = 1
    pp: int = 1
    vpp: int | None = None
    cp: int = 1
    sequence_parallel: bool = False
    micro_batch: int = 1
    global_batch: int = 128
    seq_length: int = 2048
    recompute: Recompute = "none"
    recompute_method: Literal["uniform", "block"] = "uniform"
    recompute_num_layers: int = 1
    distributed_optimizer: bool = True
    lora: LoraSpec | None = None
    half_precision: bool = True
    """bf16 or fp16 weights with fp32 master copies; False means plain fp32 training."""
    head_loss: Literal["full", "chunked"] = "full"
    """model.head_loss: chunked keeps the vocab-wide logits of CHUNK_TOKENS tokens at a time..."""
    head_loss_min_vocab: int = 0
    """...for vocabularies of at least this many entries (AUTO_MIN_VOCAB under head_loss auto)."""
    recompute_mlp_activation: bool = True
    """activation_checkpointing.recompute_mlp_activation: the SwiGLU output (FC2 input) is not kept."""
    fp8_frozen_base: bool = False
    """precision.fp8_frozen_base (LoRA): the layers' frozen linear weights in FP8, 1 byte a parameter."""

    @property
    def model_parallel(self) -> int:
        return self.tp * self.pp * self.cp

    @property
    def dp(self) -> int:
        """Data-parallel size (at least 1, also when the layout does not fit the GPU count)."""
        return max(self.world_size // self.model_parallel, 1)

    @property
    def nodes(self) -> int | float:
        """Whole nodes where the GPU count allows, else a fraction (a partial node)."""
        whole, rest = divmod(self.world_size, self.gpus_per_node)
        return whole if not rest else self.world_size / self.gpus_per_node

    @property
    def micro_batches_per_step(self) -> int:
        """Micro batches each pipeline runs per optimizer step (gradient accumulation)."""
        return max(self.global_batch // (self.micro_batch * self.dp), 1)

    @property
    def mode(self) -> str:
        return "lora" if self.lora else "sft"


def lora_spec(cfg: PrimusConfig) -> LoraSpec | None:
    """The run's adapters (the config has checked lora.lora_target_modules); None without LoRA."""
    lora = cfg.lora
    return LoraSpec(lora.lora_rank, frozenset(lora.lora_target_modules), lora.lora_dropout) if lora.use_lora else None


def layout_from_config(cfg: PrimusConfig, world_size: int, gpus_per_node: int) -> Layout:
    """The layout a run of this config on `world_size` GPUs would use."""
    p, recompute = cfg.parallelism, cfg.activation_checkpointing
    return Layout(
        world_size=world_size,
        gpus_per_node=gpus_per_node,
        tp=p.tensor_model_parallel_size,
        pp=p.pipeline_model_parallel_size,
        vpp=p.virtual_pipeline_model_parallel_size,
        cp=p.context_parallel_size,
        sequence_parallel=p.sequence_parallel,
        micro_batch=cfg.training.micro_batch_size,
        global_batch=cfg.training.global_batch_size,
        seq_length=cfg.data.seq_length,
        recompute=recompute.recompute_granularity if recompute.recompute_activations else "none",
        recompute_method=recompute.recompute_method,
        recompute_num_layers=recompute.recompute_num_layers,
        distributed_optimizer=p.use_distributed_optimizer,
        lora=lora_spec(cfg),
        half_precision=cfg.precision.bf16 or cfg.precision.fp16,
        head_loss=head_loss_mode(cfg),
        head_loss_min_vocab=chunked_min_vocab(cfg),
        recompute_mlp_activation=recompute.recompute_mlp_activation,
        fp8_frozen_base=cfg.precision.fp8_frozen_base and cfg.lora.use_lora,
    )
