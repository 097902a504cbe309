"""The hf engine's training loop: steps, validation, checkpoints, preemption, export, result."""

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from ...checkpoint.store import write_checkpoint
from ...run.result import TrainResult
from ...run.nonfinite import NonFiniteGuard
from ...run.profiler import StepProfiler
from ...run.rng import capture_rng
from ...run.signals import PreemptionWatch
from .batches import Batch, make_batch, step_batches
from .checkpoint import fill_checkpoint
from .distributed import barrier, gather_objects
from .export import export_checkpoint
from .nonfinite import FiniteUpdates
from .progress import Progress
from .scalars import Scalars
from .setup import Run
from .step import StepStats, evaluate, train_step


def mask_dtype(run: Run) -> torch.dtype:
    return run.precision.autocast_dtype or torch.float32


def eval_batches(run: Run) -> Iterator[tuple[int, Batch]]:
    """This rank's share of the first eval_iters x micro-batch x processes rows of the valid split (built lazily),
    as (source index, batch): a mixture's rows are batched per source, so each source's loss can be told apart."""
    valid, t, env = run.data.valid, run.cfg.training, run.env
    count = min(len(valid), t.eval_iters * t.micro_batch_size * env.world_size)
    mine = list(range(env.rank, count, env.world_size))
    sources = valid.row_sources(mine).tolist()
    groups = []
    for source in dict.fromkeys(sources):
        rows = [row for row, of in zip(mine, sources) if of == source]
        groups += [(source, rows[i:i + t.micro_batch_size]) for i in range(0, len(rows), t.micro_batch_size)]
    return ((source, make_batch(valid, g, env.device, run.loaded.attn_implementation, mask_dtype(run)))
            for source, g in groups)


def save(run: Run) -> Path | None:
    """Collective: every rank hands its RNG state to rank 0, which writes the checkpoint."""
    if run.checkpoints is None:
        return None
    run.state.world_size = run.env.world_size
    rng = gather_objects(capture_rng(), run.env)
    folder = None
    if run.env.is_main:
        folder = write_checkpoint(run.checkpoints.save, run.state.step,
                                  lambda tmp: fill_checkpoint(tmp, run.objects, run.state, rng),
                                  run.cfg.checkpointing.keep_last)
    barrier(run.env)
    return folder or run.checkpoints.save


def _run_step(run: Run, optimizer) -> tuple[StepStats, float]:
    started = time.perf_counter()
    batches = step_batches(run.data.train, run.sampler, run.plan, run.env, run.loaded.attn_implementation,
                           mask_dtype(run))
    stats = train_step(run.model, optimizer, run.objects.scheduler, batches, run.env, run.precision,
                       run.cfg.training.clip_grad, run.loaded.logits_to_keep, run.loaded.fused_loss)
    return stats, time.perf_counter() - started


def _maybe_evaluate(run: Run, progress: Progress, scalars: Scalars, last: bool) -> None:
    t, step = run.cfg.training, run.state.step
    if t.eval_iters == 0 or not len(run.data.valid) or not (step % t.eval_interval == 0 or last):
        return
    # The plain module, not the DDP wrapper: ranks may hold different numbers of validation batches.
    names = run.data.valid.source_names
    result = evaluate(run.loaded.model, eval_batches(run), len(names), run.env, run.precision,
                      run.loaded.logits_to_keep, run.loaded.fused_loss)
    if result is not None:
        run.state.eval_losses[str(step)] = result.loss
        by_source = {name: loss for name, loss in zip(names, result.by_source) if loss is not None} \
            if len(names) > 1 else {}
        scalars.validation(step, result.loss, by_source)
        progress.note("validation: step %d | loss %.4f" + " | %s %.4f" * len(by_source), step, result.loss,
                      *(item for pair in by_source.items() for item in pair))


def _step_optimizer(run: Run):
    """What the training step updates through: with a skip budget, a wrapper that refuses non-finite updates."""
    return FiniteUpdates(run.objects.optimizer) if run.cfg.training.skip_nonfinite_steps else run.objects.optimizer


def train_loop(run: Run, progress: Progress, scalars: Scalars) -> tuple[bool, list[float]]:
    """Run the remaining steps; returns (preempted, step times). NonFiniteError stops it before a save."""
    t, state, times = run.cfg.training, run.state, []
    tokens_per_step = t.global_batch_size * run.cfg.data.seq_length
    run.model.train()
    profiler = StepProfiler.for_run(run.cfg, run.env.rank)
    guard = NonFiniteGuard(t.skip_nonfinite_steps, run.cfg.checkpointing.save, state.skipped_steps)
    optimizer = _step_optimizer(run)
    with PreemptionWatch() as watch, contextlib.closing(profiler):
        while state.step < t.train_iters:
            profiler.step_started(state.step + 1)
            stats, seconds = _run_step(run, optimizer)
            times.append(seconds)
            state.step += 1
            profiler.step_finished(state.step)
            skipped = guard.check(state.step, stats.loss, stats.grad_norm)
            if skipped:
                state.skipped_steps = list(guard.skipped)
                progress.warn(skipped)
            state.consumed_samples += t.global_batch_size
            state.losses.append(stats.loss)
            progress.step(state.step, stats, tokens_per_step / seconds)
            scalars.step(state.step, stats, tokens_per_step / seconds)
            last = state.step == t.train_iters
            _maybe_evaluate(run, progress, scalars, last)
            stop = watch.should_stop()
            if stop or last or state.step % run.cfg.checkpointing.save_interval == 0:
                folder = save(run)
                if folder is not None:
                    progress.note("checkpoint: step %d saved to %s", state.step, folder)
            if stop and not last:
                return True, times
    return False, times


def _export(run: Run, preempted: bool) -> Path | None:
    cfg = run.cfg
    if not cfg.convert_to_hf or preempted or run.checkpoints is None:
        return None
    out = None
    if run.env.is_main:
        out = export_checkpoint(run.checkpoints.save, cfg.hf_save_path, cfg.checkpointing.overwrite)
    barrier(run.env)
    return out or Path(cfg.hf_save_path)


def _peak_memory(run: Run) -> tuple[int | None, int | None]:
    if run.env.device.type != "cuda":
        return None, None
    return torch.cuda.max_memory_allocated(run.env.device), torch.cuda.max_memory_reserved(run.env.device)


def run_training(run: Run) -> TrainResult:
    start_step, t = run.state.step, run.cfg.training
    progress = Progress(t.train_iters, start_step, t.log_interval, run.env.is_main)
    scalars = Scalars(run.cfg, run.env.is_main)
    try:
        preempted, times = train_loop(run, progress, scalars)
    finally:
        progress.close()
        scalars.close()
    export_dir = _export(run, preempted)
    tokens_per_step = t.global_batch_size * run.cfg.data.seq_length
    allocated, reserved = _peak_memory(run)
    return TrainResult(
        engine="hf", steps_done=run.state.step, losses=list(run.state.losses),
        tokens_per_second=tokens_per_step * len(times) / sum(times) if times else None,
        checkpoint_dir=Path(run.checkpoints.save) if run.checkpoints else None, export_dir=export_dir,
        preempted=preempted, step_times=times, tokens_per_step=tokens_per_step,
        trainable_params=run.loaded.trainable_params, total_params=run.loaded.total_params,
        peak_memory_allocated=allocated, peak_memory_reserved=reserved,
        extra={"eval_losses": dict(run.state.eval_losses), "first_step": start_step + 1,
               "attn_implementation": run.loaded.attn_implementation, "precision": run.precision.why,
               "world_size": run.env.world_size})
