"""Everything a run needs before its first step: outputs checked, data, model, optimizer, restored state."""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ...checkpoint import Marker, iteration_dir, read_marker
from ...checkpoint.store import newest_loadable, remove_checkpoints, remove_stale_temporaries
from ...config import ConfigError, PrimusConfig
from ...data import PreparedData
from ...run.outputs import CheckpointPlan, check_export_dir, plan_checkpoint_dir
from ...run.resume_config import changes_record, check_resume_config, describe_honoured
from ...run.rng import restore_rng, seed_everything
from .batches import BatchPlan, StepSampler
from .checkpoint import (
    TrainerState,
    TrainingObjects,
    checkpoint_marker,
    checkpoint_problems,
    read_rng,
    read_trainer_state,
    restore_optimizer,
)
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
        final = iteration_dir(Path(save), cfg.training.train_iters)
        check_export_dir(cfg.hf_save_path, cfg.checkpointing.overwrite, checkpoint=final)
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


@dataclass(frozen=True)
class ResumePoint:
    folder: Path
    config_changes: dict
    """Honoured config changes against the checkpoint: {key: (old, new)}."""


def _restore(resume: ResumePoint, objects: TrainingObjects, env: DistEnv) -> TrainerState:
    try:
        restore_optimizer(resume.folder, objects.optimizer, objects.scheduler)
        state = read_trainer_state(resume.folder)
        rng = read_rng(resume.folder, env.rank)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"resume: cannot restore the training state from {resume.folder}: {err}; remove that "
                          "iteration folder to resume from the one before, or pass --no_resume --overwrite") from None
    if resume.config_changes:
        log.info("resume: config changes honoured from step %d: %s", state.step,
                 describe_honoured(resume.config_changes))
        state.config_changes.append(changes_record(state.step, resume.config_changes))
    if rng is None:
        log.warning("resume: no RNG state for rank %d (saved with %d processes); keeping the seeded RNG",
                    env.rank, state.world_size)
    else:
        restore_rng(rng)
    return state


def _marker(cfg: PrimusConfig, tokenizer, template: str) -> Marker:
    return checkpoint_marker(cfg, model_source(cfg), end_of_turn_token_id(template, tokenizer), template)


def _wrap_ddp(model: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [env.device.index] if env.device.type == "cuda" else None
    # broadcast_buffers off: the model's buffers (rotary frequencies) are identical constants on every rank.
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def _resume_point(checkpoints: CheckpointPlan | None, cfg: PrimusConfig) -> ResumePoint | None:
    """The iteration folder to resume from (checked to be an hf-engine checkpoint of the same kind and config)."""
    if checkpoints is None or checkpoints.resume_step is None:
        return None
    step, folder = newest_loadable(checkpoints.save, checkpoints.resume_step, "hf", checkpoint_problems)
    marker = read_marker(folder)
    engine = marker.engine if marker is not None else "unknown"
    lora = engine == "hf" and marker.lora
    if engine != "hf" or lora != cfg.lora.use_lora:
        kind = f"{engine} engine" + (f", {'LoRA' if lora else 'full fine-tune'}" if engine == "hf" else "")
        raise ConfigError(f"checkpointing.save: {checkpoints.save} holds a checkpoint of another kind of run ({kind}) "
                          f"at step {step}; choose a fresh folder, or pass --no_resume --overwrite to replace it")
    changes = check_resume_config(folder, cfg)
    log.info("resume: %s holds a checkpoint at step %d; continuing from it (--no_resume to start over "
             "in a fresh folder)", checkpoints.save, step)
    return ResumePoint(folder, changes)


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
    resume = _resume_point(checkpoints, cfg)
    tokenizer, data = load_run_data(cfg, env)
    loaded = build_model(cfg, env, resume.folder / "model" if resume else None)
    optimizer = build_optimizer(loaded.model, cfg)
    objects = TrainingObjects(loaded.model, optimizer, build_scheduler(optimizer, cfg), tokenizer, cfg,
                              _marker(cfg, tokenizer, data.report.template))
    state = _restore(resume, objects, env) if resume else TrainerState(world_size=env.world_size)
    return Run(cfg, env, precision, loaded, _wrap_ddp(loaded.model, env), objects, data,
               StepSampler(data.train, cfg.data.seed, state.consumed_samples), batch_plan(cfg, env), state,
               checkpoints)
