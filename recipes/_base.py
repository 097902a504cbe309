"""What every recipe shares: the per-mode defaults, the tuning table types, and the config layer it renders.

A recipe module holds a `ModelShape` and a `Recipe` whose size class (`recipes/_sizes.py`) has
`sft` / `lora` tables mapping a GPU memory tier (GB) to a `Tuning`; a GPU type uses the entry with
the largest tier not above its memory. So six GPU types x two modes come from two or three table
rows per mode, shared by the models of one size, not twelve copies per model.
"""

from dataclasses import dataclass, replace

from primus_bridge.hardware import GPU_TYPES, gpu_type

from primus_bridge.models.shape import ModelShape

MODES = ("sft", "lora")


@dataclass(frozen=True)
class Tuning:
    """Parallel layout and batch shape for one mode on one GPU memory tier."""

    tp: int = 1
    pp: int = 1
    vpp: int | None = None
    cp: int = 1
    sp: bool | None = None
    """Sequence parallel; None means on whenever tp > 1."""
    micro_batch: int = 1
    """1: each micro batch is one packed row, the case Megatron's packed-sequence attention handles."""
    recompute: bool = False
    """Full, uniform recompute of every layer (Megatron's 'full' granularity)."""
    nodes: int = 1
    """Nodes of 8 GPUs this layout is sized for; it also works on twice as many."""

    @property
    def sequence_parallel(self) -> bool:
        return self.tp > 1 if self.sp is None else self.sp


@dataclass(frozen=True)
class ModeDefaults:
    """Schedule and batch per mode, from the contract's guidance tables."""

    lr: float
    global_batch: int
    train_iters: int
    warmup: int


SFT = ModeDefaults(lr=1.0e-5, global_batch=128, train_iters=5000, warmup=100)
LORA = ModeDefaults(lr=2.0e-4, global_batch=64, train_iters=3000, warmup=50)
# 30B and up: the low end of the guidance ranges.
SFT_LARGE = replace(SFT, lr=5.0e-6)
LORA_LARGE = replace(LORA, lr=1.0e-4)


@dataclass(frozen=True)
class SizeClass:
    """Tuning tables and schedules for models of one size (each recipe's fit is still tested on its own)."""

    sft: dict[int, Tuning]
    lora: dict[int, Tuning]
    sft_defaults: ModeDefaults = SFT
    lora_defaults: ModeDefaults = LORA


@dataclass(frozen=True)
class Recipe:
    """A model's facts plus its tuned settings for sft / lora on every GPU type."""

    name: str
    """The recipe module's name (what --recipe takes)."""
    shape: ModelShape
    size: SizeClass
    template: str
    """The model family's prompt template (data.prompt_template: auto uses it when the tokenizer has no
    chat_template of its own)."""
    seq_length: int = 4096
    lora_rank: int = 16
    lora_alpha: float = 32
    lora_targets: tuple[str, ...] | None = None
    """Projections LoRA adapts; None: every one (q, k, v, o, gate, up, down), as Megatron-Bridge does."""
    cpu_friendly: bool = False
    """Runs without a GPU (the demo model): gpu None is allowed."""

    def tuning(self, mode: str, gpu: str | None) -> Tuning:
        """The table row for this mode and GPU type; ValueError naming --gpu / --mode choices."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        table = self.size.sft if mode == "sft" else self.size.lora
        if gpu is None:
            if not self.cpu_friendly:
                raise ValueError(f"recipe {self.name} needs a GPU type and none is visible here; "
                                 f"pass --gpu (one of {', '.join(GPU_TYPES)})")
            return table[min(table)]
        tiers = [tier for tier in table if tier <= gpu_type(gpu).memory_gb]
        if not tiers:
            raise ValueError(f"recipe {self.name} has no {mode} settings for {gpu}")
        return table[max(tiers)]

    def config_layer(self, mode: str, gpu: str | None) -> dict:
        """The recipe as a config layer in the user's YAML layout."""
        tuning = self.tuning(mode, gpu)
        layer = {
            "model": {
                "num_attention_heads": self.shape.num_attention_heads,
                "num_query_groups": self.shape.num_query_groups,
                "max_position_embeddings": self.shape.max_position_embeddings,
            },
            "data": {"seq_length": self.seq_length},
            "training": self._training(mode, tuning),
            "parallelism": _parallelism(tuning),
            "activation_checkpointing": {"recompute_activations": tuning.recompute, "recompute_granularity": "full",
                                         "recompute_method": "uniform", "recompute_num_layers": 1},
        }
        if self.shape.hf_id:
            layer["hf_model_name_or_path"] = self.shape.hf_id
        if mode == "lora":
            layer["lora"] = {"use_lora": True, "lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha,
                             "lora_target_modules": list(self.lora_targets or self.shape.linear_dims())}
        return layer

    def _training(self, mode: str, tuning: Tuning) -> dict:
        defaults = self.size.sft_defaults if mode == "sft" else self.size.lora_defaults
        return {"micro_batch_size": tuning.micro_batch, "global_batch_size": defaults.global_batch,
                "train_iters": defaults.train_iters, "lr": defaults.lr, "min_lr": defaults.lr / 10,
                "lr_warmup_iters": defaults.warmup}


def _parallelism(tuning: Tuning) -> dict:
    values = {
        "tensor_model_parallel_size": tuning.tp,
        "pipeline_model_parallel_size": tuning.pp,
        "context_parallel_size": tuning.cp,
        "sequence_parallel": tuning.sequence_parallel,
        "use_distributed_optimizer": True,
    }
    if tuning.vpp:
        values["virtual_pipeline_model_parallel_size"] = tuning.vpp
    return values
