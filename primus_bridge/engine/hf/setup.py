"""Everything a run needs before its first step: outputs checked, data, model, optimizer, restored state."""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ...checkpoint_info import checkpoint_engine, iteration_dir
from ...config import ConfigError, PrimusConfig
from ...data import PreparedData
from ...run.checkpoints import remove_checkpoints, remove_stale_temporaries
from ...run.outputs import CheckpointPlan, check_export_dir, plan_checkpoint_dir
from ...run.rng import restore_rng, seed_everything
from .batches import BatchPlan, StepSampler
from .checkpoint import CheckpointMeta, TrainerState, TrainingObjects, read_rng, read_trainer_state, restore_optimizer
from .data import end_of_turn_token_id, load_run_data
from .distributed import DistEnv, barrier
from .model import LoadedModel, build_model, model_source
from .optim import build_optimizer, build_scheduler, check_schedule
from .precision import Precision, choose_precision

log = logging.getLogger("primus_bridge")


@dataclass
class Run:
    """The live objects of one training run."""

    cfg: PrimusConfig
    env: DistEnv
    precision: Precision
    loaded: LoadedModel
    model: torch.nn.Module
    objects: TrainingObjects
    data: PreparedData
    sampler: StepSampler
    plan: BatchPlan
    state: TrainerState
    checkpoints: CheckpointPlan | None


def plan_outputs(cfg: PrimusConfig, env: DistEnv) -> CheckpointPlan | None:
    """Check the checkpoint and export folders before any work; tidy the checkpoint folder on rank 0."""
    save = cfg.checkpointing.save
    if cfg.convert_to_hf and not save:
        raise ConfigError("checkpointing.save: the hf engine exports from its final checkpoint; pass --save DIR")
    if cfg.convert_to_hf:
        check_export_dir(cfg.hf_save_path, cfg.checkpointing.overwrite)
    if not save:
        return None
    plan = plan_checkpoint_dir(save, cfg.checkpointing.resume, cfg.checkpointing.overwrite)
    if env.is_main:
        remove_stale_temporaries(plan.save)
        if plan.clear_old:
            log.info("checkpointing: --overwrite without resume: deleting the old checkpoints in %s", plan.save)
            remove_checkpoints(plan.save)
    barrier(env)
    return plan


def batch_plan(cfg: PrimusConfig, env: DistEnv) -> BatchPlan:
    t = cfg.training
    if t.global_batch_size % (t.micro_batch_size * env.world_size):
        raise ConfigError(f"training.global_batch_size: {t.global_batch_size} is not divisible by micro_batch_size "
                          f"({t.micro_batch_size}) x processes ({env.world_size})")
    return BatchPlan(t.global_batch_size, t.micro_batch_size, env.world_size)


def _restore(run_dir: Path, objects: TrainingObjects, env: DistEnv) -> TrainerState:
    restore_optimizer(run_dir, objects.optimizer, objects.scheduler)
    state = read_trainer_state(run_dir)
    rng = read_rng(run_dir, env.rank)
    if rng is None:
        log.warning("resume: no RNG state for rank %d (saved with %d processes); keeping the seeded RNG",
                    env.rank, state.world_size)
    else:
        restore_rng(rng)
    return state


def _meta(cfg: PrimusConfig, tokenizer, template: str) -> CheckpointMeta:
    return CheckpointMeta(step=0, lora=cfg.lora.use_lora, base_model=model_source(cfg),
                          eos_token_id=end_of_turn_token_id(template, tokenizer), template=template)


def _wrap_ddp(model: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [env.device.index] if env.device.type == "cuda" else None
    # broadcast_buffers off: the model's buffers (rotary frequencies) are identical constants on every rank.
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def _resume_dir(checkpoints: CheckpointPlan | None, cfg: PrimusConfig) -> Path | None:
    """The iteration folder to resume from (checked to be an hf-engine checkpoint of the same kind), or None."""
    if checkpoints is None or checkpoints.resume_step is None:
        return None
    folder = iteration_dir(checkpoints.save, checkpoints.resume_step)
    engine = checkpoint_engine(folder)
    lora = engine == "hf" and CheckpointMeta.read(folder).lora
    if engine != "hf" or lora != cfg.lora.use_lora:
        kind = f"{engine} engine" + (f", {'LoRA' if lora else 'full fine-tune'}" if engine == "hf" else "")
        raise ConfigError(f"checkpointing.save: {checkpoints.save} holds a checkpoint of another kind of run ({kind}) "
                          f"at step {checkpoints.resume_step}; choose a fresh folder, or pass --no_resume "
                          "--overwrite to replace it")
    log.info("resume: %s holds a checkpoint at step %d; continuing from it (--no_resume to start over "
             "in a fresh folder)", checkpoints.save, checkpoints.resume_step)
    return folder


def check_settings(cfg: PrimusConfig, env: DistEnv) -> Precision:
    """The hf engine's own config checks, before any data or weights are loaded."""
    model_source(cfg)
    check_schedule(cfg)
    batch_plan(cfg, env)
    return choose_precision(cfg, env.device)


def build_run(cfg: PrimusConfig, env: DistEnv) -> Run:
    precision = check_settings(cfg, env)
    checkpoints = plan_outputs(cfg, env)
    seed_everything(cfg.training.seed)
    tokenizer, data = load_run_data(cfg, env)
    resume_dir = _resume_dir(checkpoints, cfg)
    loaded = build_model(cfg, env, resume_dir / "model" if resume_dir else None)
    optimizer = build_optimizer(loaded.model, cfg)
    objects = TrainingObjects(loaded.model, optimizer, build_scheduler(optimizer, cfg), tokenizer, cfg,
                              _meta(cfg, tokenizer, data.report.template))
    state = _restore(resume_dir, objects, env) if resume_dir else TrainerState(world_size=env.world_size)
    return Run(cfg, env, precision, loaded, _wrap_ddp(loaded.model, env), objects, data,
               StepSampler(data.train, cfg.data.seed, state.consumed_samples), batch_plan(cfg, env), state,
               checkpoints)
