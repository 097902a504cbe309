"""Translate the validated primus-bridge config into Megatron-Bridge's `ConfigContainer`.

One function per Megatron-Bridge section; each reads only the typed config. The model provider
(built from the HF config or the starting checkpoint, see sources.py) gets parallelism, precision
and recompute settings here too, since Megatron keeps those on the model config.

The objective is the hf engine's: the mean cross-entropy over the trained tokens of the whole step (every
micro batch, every data-parallel rank), so a micro batch counts by its trained tokens, not as 1/M of the
step. That is Megatron-Core's per-token loss path: the loss function returns each micro batch's loss sum
and token count, ranks sum their gradients (no averaging in the collective) and `finalize_model_grads`
divides them by the step's all-reduced token count before the optimizer clips them.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from megatron.bridge.training.config import (
    CheckpointConfig,
    ConfigContainer,
    DistributedDataParallelConfig,
    DistributedInitConfig,
    LoggerConfig,
    OptimizerConfig,
    RerunStateMachineConfig,
    RNGConfig,
    SchedulerConfig,
    TrainingConfig,
    ValidationConfig,
)
from megatron.bridge.training.mixed_precision import MixedPrecisionConfig, get_mixed_precision_config
from megatron.bridge.training.tokenizers.config import TokenizerConfig

from ...config import ConfigError, PrimusConfig
from ...config.head_loss import chunked_min_vocab, head_loss_mode
from ...run.trackers import mlflow_tracking_uri, prepare_trackers, run_name, wandb_dir
from .chunked_head_loss import use_chunked_head_loss
from .compat.swiglu_recompute import use_swiglu_recompute
from .compat.te_compat import transformer_engine_available
from .cuda_graph import graph_enabled, use_full_iteration_graph
from .dataset import PackedRowsProvider
from .fp8_frozen_base import use_fp8_frozen_base
from .layer_spec import accumulate_wgrad_in_matmul
from .lora import build_peft


@dataclass(frozen=True)
class StartingPoint:
    """Where the weights come from and where the run writes; filled by sources.py."""

    base_checkpoint: Path
    """Megatron checkpoint with the starting weights (imported from HF, or --load)."""
    save: Path | None
    tokenizer_path: str
    """Folder of the HF tokenizer the data pipeline uses."""


def training_section(cfg: PrimusConfig) -> TrainingConfig:
    """Megatron's micro batch is one packed stream of `micro_batch_size` rows (see dataset.py)."""
    t = cfg.training
    return TrainingConfig(train_iters=t.train_iters, micro_batch_size=1,
                          global_batch_size=t.global_batch_size // t.micro_batch_size, exit_signal_handler=True,
                          manual_gc=True, manual_gc_interval=100)


def validation_section(cfg: PrimusConfig) -> ValidationConfig:
    has_valid = cfg.data.split_fractions()[1] > 0
    eval_iters = cfg.training.eval_iters if has_valid else 0
    return ValidationConfig(eval_iters=eval_iters, eval_interval=cfg.training.eval_interval)


def optimizer_section(cfg: PrimusConfig) -> OptimizerConfig:
    t, p = cfg.training, cfg.precision
    return OptimizerConfig(
        optimizer="adam", lr=t.lr, min_lr=t.min_lr, weight_decay=t.weight_decay,
        adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2, adam_eps=t.adam_eps, clip_grad=t.clip_grad,
        use_distributed_optimizer=cfg.parallelism.use_distributed_optimizer,
        bf16=p.bf16, fp16=p.fp16, params_dtype=torch.float32,
    )


def scheduler_section(cfg: PrimusConfig) -> SchedulerConfig:
    """Linear warm-up, then `lr_decay_style` (cosine by default) down to min_lr at train_iters."""
    t = cfg.training
    # override: a resumed run with a new train_iters decays over the new length (run/resume_config.py refuses
    # changes to the other schedule keys, so they always equal the checkpoint's).
    return SchedulerConfig(lr_decay_style=t.lr_decay_style, lr_warmup_iters=t.lr_warmup_iters,
                           lr_decay_iters=t.train_iters, start_weight_decay=t.weight_decay,
                           end_weight_decay=t.weight_decay, weight_decay_incr_style="constant",
                           override_opt_param_scheduler=True)


def rerun_section() -> RerunStateMachineConfig:
    """Megatron-Core's rerun state machine with reruns disabled and its in-pass checks off.

    The NaN / Inf check of each micro batch's loss, like DDP's check of the reduced gradients (ddp_section),
    reads a device value on the host: a stall per micro batch (per bucket for DDP) that keeps the host from
    running ahead of the GPU, and a read a step recorded as a CUDA graph cannot make (cuda_graph.py). Both are
    off for every run; the `nonfinite_grad_norm` entry (compat/grad_norm_check.py) checks the step's gradient
    norm, which the optimizer reads on the host anyway: a non-finite loss or gradient makes it non-finite.

    With reruns disabled a failed check raises at once on the rank that saw it, before the step's update
    and before any save; engine.py turns that into the non-finite exit code. (`validate_results` would rerun
    the step to attribute the fault to hardware and exit for a requeue on other GPUs, which a fine-tuning
    job with deterministic NaNs, from a too-high learning rate or bad data, does not want.)
    """
    return RerunStateMachineConfig(rerun_mode="disabled", check_for_nan_in_loss=False, check_for_spiky_loss=False)


def ddp_section(cfg: PrimusConfig) -> DistributedDataParallelConfig:
    return DistributedDataParallelConfig(
        use_distributed_optimizer=cfg.parallelism.use_distributed_optimizer,
        grad_reduce_in_fp32=True, overlap_grad_reduce=False, overlap_param_gather=False,
        check_for_nan_in_grad=False,  # the gradient norm's check covers it (rerun_section)
        average_in_collective=False,  # per-token loss: sum, then / tokens
    )


def checkpoint_section(cfg: PrimusConfig, start: StartingPoint) -> CheckpointConfig:
    c = cfg.checkpointing
    save = str(start.save) if start.save else None
    return CheckpointConfig(
        save=save, save_interval=c.save_interval, load=save if c.resume else None,
        pretrained_checkpoint=str(start.base_checkpoint), async_save=c.async_save,
        most_recent_k=c.keep_last or -1, ckpt_format="torch_dist", fully_parallel_save=True,
        save_rng=True, load_rng=True, save_optim=True, load_optim=True,
    )


def logger_section(cfg: PrimusConfig) -> LoggerConfig:
    """TensorBoard, W&B and MLflow through Megatron-Bridge's own writers, which log the same scalars to each.

    The library has no field for W&B's offline mode or MLflow's file-store opt-in: those are environment
    variables (run/trackers.py), set here because the container is built in the training process.
    """
    prepare_trackers(cfg)
    return LoggerConfig(log_interval=cfg.training.log_interval, tensorboard_dir=cfg.training.tensorboard_dir,
                        log_throughput=True, log_timers_to_tensorboard=cfg.training.tensorboard_dir is not None,
                        **wandb_settings(cfg), **mlflow_settings(cfg))


def wandb_settings(cfg: PrimusConfig) -> dict:
    w = cfg.logging.wandb
    if not w.enabled:
        return {}
    return {"wandb_project": w.project, "wandb_exp_name": run_name(cfg, w), "wandb_entity": w.entity,
            "wandb_save_dir": wandb_dir(w)}


def mlflow_settings(cfg: PrimusConfig) -> dict:
    """mlflow_log_artifacts off: the library would copy every checkpoint into the tracking store."""
    m = cfg.logging.mlflow
    if not m.enabled:
        return {}
    return {"mlflow_experiment": m.project, "mlflow_run_name": run_name(cfg, m),
            "mlflow_tracking_uri": mlflow_tracking_uri(m), "mlflow_log_artifacts": False}


def tokenizer_section(start: StartingPoint) -> TokenizerConfig:
    return TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=start.tokenizer_path)


def mixed_precision_section(cfg: PrimusConfig) -> MixedPrecisionConfig:
    p = cfg.precision
    if p.fp8:
        if not transformer_engine_available():
            raise ConfigError(f"precision.fp8: {p.fp8!r} needs TransformerEngine, which is not installed here; "
                              "remove fp8 or run in an image with TransformerEngine")
        recipe = get_mixed_precision_config("fp16_with_fp8_delayed_scaling_mixed" if p.fp16
                                            else "bf16_with_fp8_delayed_scaling_mixed")
        recipe.fp8 = p.fp8
        return recipe
    if p.bf16:
        return get_mixed_precision_config("bf16_mixed")
    if p.fp16:
        return get_mixed_precision_config("fp16_mixed")
    return MixedPrecisionConfig(fp32=True, params_dtype=torch.float32, pipeline_dtype=torch.float32,
                                autocast_enabled=False, grad_reduce_in_fp32=True)


def dataset_section(cfg: PrimusConfig) -> PackedRowsProvider:
    return PackedRowsProvider(primus_config=cfg.model_dump(mode="json"),
                              rows_per_stream=cfg.training.micro_batch_size, static_shapes=graph_enabled(cfg),
                              seed=cfg.data.seed,
                              num_workers=cfg.data.num_workers, persistent_workers=cfg.data.num_workers > 0)


def apply_model_settings(provider, cfg: PrimusConfig) -> None:
    """Parallelism, sequence length, weight-gradient accumulation, CUDA graphs and activation recompute live on
    Megatron's model config."""
    p, r = cfg.parallelism, cfg.activation_checkpointing
    provider.tensor_model_parallel_size = p.tensor_model_parallel_size
    provider.pipeline_model_parallel_size = p.pipeline_model_parallel_size
    provider.virtual_pipeline_model_parallel_size = p.virtual_pipeline_model_parallel_size
    provider.context_parallel_size = p.context_parallel_size
    provider.sequence_parallel = p.sequence_parallel
    provider.seq_length = cfg.data.seq_length * cfg.training.micro_batch_size
    provider.calculate_per_token_loss = True  # the step's mean over its trained tokens (see the module doc)
    accumulate_wgrad_in_matmul(provider, trains_full_weights=not cfg.lora.use_lora)
    if graph_enabled(cfg):
        use_full_iteration_graph(provider)
    if head_loss_mode(cfg) == "chunked":
        provider.register_pre_wrap_hook(functools.partial(use_chunked_head_loss, min_vocab=chunked_min_vocab(cfg)))
    if r.recompute_mlp_activation:
        provider.register_pre_wrap_hook(use_swiglu_recompute)
    if cfg.precision.fp8_frozen_base:  # after LoRA and the bf16 wrapper: see fp8_frozen_base.py
        provider.register_post_wrap_hook(use_fp8_frozen_base)
    if r.recompute_activations:
        provider.recompute_granularity = r.recompute_granularity
        if r.recompute_granularity == "full":
            provider.recompute_method = r.recompute_method
            provider.recompute_num_layers = r.recompute_num_layers


def build_config_container(cfg: PrimusConfig, provider, start: StartingPoint) -> ConfigContainer:
    apply_model_settings(provider, cfg)
    return ConfigContainer(
        model=provider,
        train=training_section(cfg),
        validation=validation_section(cfg),
        optimizer=optimizer_section(cfg),
        scheduler=scheduler_section(cfg),
        ddp=ddp_section(cfg),
        dataset=dataset_section(cfg),
        logger=logger_section(cfg),
        tokenizer=tokenizer_section(start),
        checkpoint=checkpoint_section(cfg, start),
        rng=RNGConfig(seed=cfg.training.seed),
        rerun_state_machine=rerun_section(),
        dist=DistributedInitConfig(),
        mixed_precision=mixed_precision_section(cfg),
        peft=build_peft(cfg.lora, resume=start.save if cfg.checkpointing.resume else None)
        if cfg.lora.use_lora else None,
    )
