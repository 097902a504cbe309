"""The megatron engine: fine-tuning through Megatron-Bridge's `finetune()`, HF import and export."""

import json
import logging
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from ...checkpoint import Marker, export_marker, is_export_of, iteration_dir, read_marker, write_marker
from ...checkpoint.integrity import json_problem, torch_dist_problems, zip_problem
from ...checkpoint.marker import ENGINE_CONFIG_FILES
from ...checkpoint.store import newest_loadable, no_space_error, out_of_space, remove_checkpoints
from ...config import ConfigError, PrimusConfig
from ...run.nonfinite import NonFiniteError, skip_setting_problem
from ...run.outputs import check_export_dir, plan_checkpoint_dir, remove_stale_export_temporaries
from ...run.profiler import StepProfiler
from ...run.resume_config import changes_record, check_resume_config, config_dump, describe_honoured
from ...run.signals import forwarded_to_sigterm
from ...run.result import TrainResult
from .callbacks import CheckpointMarkers, CheckResumedAdam, ProfileSteps, RefuseNonfiniteWeights, StepRecorder
from .container import StartingPoint, build_config_container
from .cuda_graph import FreeCachedMemoryBeforeCapture, StaticStreamForwardStep, check_cuda_graph, graph_enabled
from .dataset import mixture_source_names
from .export import training_template
from .fp8_frozen_base import check_fp8_frozen_base, restore_callback
from .layer_spec import resolve_transformer_impl
from .model import ModelPlan, megatron_iteration, preflight_errors, provider_from_checkpoint, provider_from_hf
from .runtime import ensure_rendezvous, sigusr1_as_sigterm
from .source_loss import DropEmptySources, SourceLossForwardStep
from .sources import check_supported_architecture, ensure_imported, resolve_hf_model
from .trackers import AttachRunConfig

log = logging.getLogger("primus_bridge")

MEGATRON_TRACKER = "latest_train_state.pt"
NONFINITE_CHECK = re.compile(r"iteration (\d+): Unexpected result .*\(message='(found (?:NaN|Inf) in [^']*)'\)")
"""What Megatron-Core's rerun state machine raises (reruns disabled) when a loss or gradient norm is NaN / Inf."""


@dataclass(frozen=True)
class Resume:
    """Where a resumed run continues: the newest whole checkpoint (older than the pointer's when it is damaged)."""

    step: int
    folder: Path
    marker: Marker | None
    config_changes: list[dict]
    """Every config change honoured so far (the checkpoint's record, plus this resume's)."""
    fell_back: bool


@dataclass
class RunPlan:
    model: ModelPlan
    start: StartingPoint
    transformer_impl: str
    template: str
    """The prompt template the data pipeline renders this run's data with (its stop token ends generation)."""


def _hf_config_limit(hf_path: Path) -> int | None:
    config = hf_path / "config.json"
    return json.loads(config.read_text()).get("max_position_embeddings") if config.is_file() else None


def _model_from_hf(cfg: PrimusConfig, impl: str) -> tuple[ModelPlan, Path | None]:
    source = resolve_hf_model(cfg.hf_model_name_or_path)
    check_supported_architecture(source)
    plan = ModelPlan(provider_from_hf(source.path, impl), source.path, source.config.get("max_position_embeddings"))
    return plan, None


def _model_from_checkpoint(cfg: PrimusConfig, impl: str) -> tuple[ModelPlan, Path]:
    iteration = megatron_iteration(cfg.model.load)
    provider = provider_from_checkpoint(iteration, impl)
    hf_name = cfg.hf_model_name_or_path or getattr(provider, "hf_model_id", None)
    if not hf_name:
        raise ConfigError("model.load: the checkpoint does not name its HF model; pass --hf_model_name_or_path "
                          "(the HF folder it was made from: its config and tokenizer are needed for export)")
    hf_path = resolve_hf_model(hf_name).path
    return ModelPlan(provider, hf_path, _hf_config_limit(hf_path)), Path(cfg.model.load)


def _resumed_base(resume: Resume | None) -> Path | None:
    """When the run resumes, the base checkpoint its checkpoint names (no second HF import)."""
    base = resume.marker.base_checkpoint if resume is not None and resume.marker is not None else None
    return Path(base) if base and Path(base).exists() else None


def plan_run(cfg: PrimusConfig, resume: Resume | None = None) -> RunPlan:
    """Everything checked and resolved before any GPU work; imports the HF model (once) when asked to."""
    from transformers import AutoTokenizer

    impl = resolve_transformer_impl(cfg.model.transformer_impl)
    check_fp8_frozen_base(cfg, impl)
    check_cuda_graph(cfg, impl)
    if cfg.convert_from_hf:
        model, base = _model_from_hf(cfg, impl)
    elif cfg.model.load:
        model, base = _model_from_checkpoint(cfg, impl)
    else:
        raise ConfigError("the megatron engine needs starting weights: --load CKPT (a Megatron checkpoint) or "
                          "--convert_from_hf --hf_model_name_or_path HF")
    errors = preflight_errors(cfg, model.provider, model.position_limit)
    if errors:
        raise ConfigError(errors)
    if base is None:
        base = _resumed_base(resume) or ensure_imported(cfg, resolve_hf_model(cfg.hf_model_name_or_path), impl)
    tokenizer_path = cfg.model.tokenizer or str(model.hf_source)
    save = Path(cfg.checkpointing.save) if cfg.checkpointing.save else None
    template = training_template(cfg, AutoTokenizer.from_pretrained(tokenizer_path, local_files_only=True))
    return RunPlan(model, StartingPoint(base, save, tokenizer_path), impl, template)


def checkpoint_problems(folder: Path) -> list[str]:
    """Every missing or damaged file of a megatron iteration folder (cheap: sizes, headers, zip directories).

    Megatron-Core's torch_dist format: `metadata.json`, the `.metadata` index and the data files it lists;
    checkpoints of earlier Megatron-Core versions also keep their common state in `common.pt`.
    """
    problems = [json_problem(folder / "metadata.json")]
    if (folder / "common.pt").exists():
        problems.append(zip_problem(folder / "common.pt"))
    return [p for p in problems if p] + torch_dist_problems(folder)


def _prepare_save_dir(cfg: PrimusConfig) -> Resume | None:
    """Resume (from the newest whole checkpoint) or start over in checkpointing.save; None for a fresh start."""
    if not cfg.checkpointing.save:
        return None
    plan = plan_checkpoint_dir(cfg.checkpointing.save, cfg.checkpointing.resume, cfg.checkpointing.overwrite)
    if plan.clear_old:
        remove_checkpoints(plan.save)
        (plan.save / MEGATRON_TRACKER).unlink(missing_ok=True)
    if plan.resume_step is None:
        return None
    step, folder = newest_loadable(plan.save, plan.resume_step, "megatron", checkpoint_problems)
    log.info("resuming from %s step %d", plan.save, step)
    changes = check_resume_config(folder, cfg)
    marker = read_marker(folder)
    earlier = marker.config_changes if marker is not None else []
    if changes:
        log.info("resume: config changes honoured from step %d: %s", step, describe_honoured(changes))
        earlier = [*earlier, changes_record(step, changes)]
    return Resume(step, folder, marker, earlier, fell_back=step != plan.resume_step)


def _check_settings(cfg: PrimusConfig) -> None:
    problem = skip_setting_problem(cfg.training.skip_nonfinite_steps, "megatron")
    if problem:
        raise ConfigError(problem)


def _marker(cfg: PrimusConfig, plan: RunPlan, config_changes: list[dict]) -> Marker:
    """The marker of this run's checkpoints (the step is filled in at each save)."""
    return Marker(engine="megatron", lora=cfg.lora.use_lora, optimizer_state=True,
                  base_model=str(plan.model.hf_source), base_checkpoint=str(plan.start.base_checkpoint),
                  tokenizer=plan.start.tokenizer_path, config_file=ENGINE_CONFIG_FILES["megatron"],
                  transformer_impl=plan.transformer_impl, template=plan.template,
                  template_date=cfg.data.template_date, config_changes=config_changes)


def _weights_source(cfg: PrimusConfig, resume: "Resume | None") -> str:
    """Where the weights the run starts from were loaded: its own checkpoint, model.load, or the HF model."""
    if resume is not None:
        return f"checkpointing.save: {resume.folder}"
    if cfg.model.load:
        return f"model.load: {cfg.model.load}"
    return f"hf_model_name_or_path: {cfg.hf_model_name_or_path}"


class MegatronBridgeRunner:
    """The engine's work; constructed after prepare_megatron() (see __init__.py)."""

    def train(self, cfg: PrimusConfig) -> TrainResult:
        _check_settings(cfg)
        if cfg.convert_to_hf:
            final = iteration_dir(Path(cfg.checkpointing.save), cfg.training.train_iters) \
                if cfg.checkpointing.save else None
            check_export_dir(cfg.hf_save_path, cfg.checkpointing.overwrite, checkpoint=final)
        resume = _prepare_save_dir(cfg)
        plan = plan_run(cfg, resume)
        container = build_config_container(cfg, plan.model.provider, plan.start)
        if resume is not None and resume.fell_back:
            container.checkpoint.ckpt_step = resume.step  # Megatron-Bridge's tracker names the damaged one
        recorder = StepRecorder()
        markers = CheckpointMarkers(plan.start.save, _marker(cfg, plan, resume.config_changes if resume else []),
                                    config_dump(cfg))
        callbacks = [recorder, markers, AttachRunConfig(cfg), RefuseNonfiniteWeights(_weights_source(cfg, resume)),
                     CheckResumedAdam()]
        if cfg.profiling.enabled:
            callbacks.append(ProfileSteps(StepProfiler.for_run(cfg)))
        if cfg.convert_to_hf and cfg.precision.fp8_frozen_base:
            callbacks.append(restore_callback(plan.start.base_checkpoint))  # the export needs the bf16 base
        if cfg.convert_to_hf:
            from .train_end_export import ExportAtTrainEnd

            callbacks.append(ExportAtTrainEnd(cfg, plan.model.hf_source, plan.start.tokenizer_path, plan.template,
                                              container.peft))
        sources = mixture_source_names(cfg)
        if sources:
            callbacks.append(DropEmptySources(sources))
        if graph_enabled(cfg):
            callbacks.append(FreeCachedMemoryBeforeCapture())
        preempted = _run_finetune(container, callbacks, _forward_step(cfg, sources), cfg.checkpointing.save)
        return _result(cfg, recorder, plan, preempted)

    def export(self, cfg: PrimusConfig, checkpoint: Path, out: Path) -> Path:
        """`convert --convert_to_hf`; an existing export of the same checkpoint is kept (see run/outputs.py)."""
        from .checkpoint_export import export_checkpoint

        iteration = megatron_iteration(checkpoint, key="--load")
        remove_stale_export_temporaries(out)
        if is_export_of(out, iteration):
            log.info("export: %s already holds the export of %s; keeping it", out, iteration)
            return Path(out)
        check_export_dir(out, cfg.checkpointing.overwrite, checkpoint=iteration)
        exported = export_checkpoint(checkpoint, out)
        trained = read_marker(iteration)
        write_marker(exported, export_marker(iteration, trained.step if trained else None, trained, "megatron"))
        return exported

    def import_hf(self, cfg: PrimusConfig, out: Path) -> Path:
        from .sources import import_hf_checkpoint

        source = resolve_hf_model(cfg.hf_model_name_or_path)
        check_supported_architecture(source)
        check_export_dir(out, cfg.checkpointing.overwrite, key="checkpointing.save")
        return import_hf_checkpoint(source, Path(out), resolve_transformer_impl(cfg.model.transformer_impl))


def nonfinite_error(err: RuntimeError, save: str | None, step: int | None = None) -> NonFiniteError | None:
    """The non-finite stop a Megatron-Core check raised, or None for any other RuntimeError.

    `step`: the run's step in flight, when known (the check counts the iterations of this process only).
    """
    found = NONFINITE_CHECK.search(str(err))
    if found is None:
        return None
    return NonFiniteError(step or int(found.group(1)), found.group(2), save)


def _forward_step(cfg: PrimusConfig, sources: tuple[str, ...]):
    """finetune()'s forward step: Megatron-Bridge's GPT step; with a data mixture's `sources` its evaluations
    report the loss of each (source_loss.py); a graphed run's micro batches get their host-side length bound
    (cuda_graph.py)."""
    from megatron.bridge.training.gpt_step import forward_step

    step = SourceLossForwardStep(sources) if sources else forward_step
    return StaticStreamForwardStep(step, cfg.data.seq_length) if graph_enabled(cfg) else step


def _run_finetune(container, callbacks, forward_step, save: str | None = None) -> bool:
    """finetune(); True when it stopped early on a signal after saving (Megatron-Bridge exits with SystemExit).

    Megatron-Bridge's exit handler listens to SIGTERM only: SIGUSR1 (SLURM) and SIGINT (Ctrl-C) are sent on
    to it. A NaN / Inf found by Megatron-Core's checks becomes NonFiniteError (its own exit code).
    """
    from megatron.bridge.training.finetune import finetune

    ensure_rendezvous()
    with sigusr1_as_sigterm(), forwarded_to_sigterm(signal.SIGINT):
        try:
            finetune(container, forward_step, callbacks=callbacks)
        except SystemExit as stop:
            if stop.code not in (0, None):
                raise
            return True
        except ConfigError:
            raise
        except RuntimeError as err:
            recorder = next((c for c in callbacks if isinstance(c, StepRecorder)), None)
            stopped = nonfinite_error(err, save, recorder.step_in_flight if recorder else None) \
                or disk_full_error(err, save)
            if stopped is None:
                raise
            raise stopped from err
        except OSError as err:
            stopped = disk_full_error(err, save)
            if stopped is None:
                raise
            raise stopped from err
    return False


def disk_full_error(err: BaseException, save: str | None) -> ConfigError | None:
    """A checkpoint write that failed on a full filesystem (Megatron-Core's writers report it as OSError or as a
    RuntimeError carrying its text), as the clear error the hf engine gives; None for anything else."""
    if save is None or not out_of_space(err):
        return None
    return no_space_error("checkpointing.save", f"a checkpoint to {save}", err)


def _result(cfg: PrimusConfig, recorder: StepRecorder, plan: RunPlan, preempted: bool) -> TrainResult:
    import torch

    tokens_per_step = cfg.training.global_batch_size * cfg.data.seq_length
    timed = recorder.step_times[1:] or recorder.step_times
    on_gpu = torch.cuda.is_available()
    return TrainResult(
        engine="megatron", steps_done=recorder.last_step or 0, losses=recorder.losses,
        tokens_per_second=tokens_per_step * len(timed) / sum(timed) if timed else None,
        checkpoint_dir=plan.start.save, export_dir=Path(cfg.hf_save_path) if cfg.convert_to_hf and not preempted
        else None, preempted=preempted, step_times=recorder.step_times, tokens_per_step=tokens_per_step,
        trainable_params=recorder.trainable_params, total_params=recorder.total_params,
        peak_memory_allocated=torch.cuda.max_memory_allocated() if on_gpu else None,
        peak_memory_reserved=torch.cuda.max_memory_reserved() if on_gpu else None,
        extra={"transformer_impl": plan.transformer_impl, "head_loss": cfg.model.head_loss,
               "recompute_mlp_activation": cfg.activation_checkpointing.recompute_mlp_activation,
               "first_step": recorder.first_step, "skipped_steps": recorder.skipped_steps,
               "eval_losses": recorder.eval_losses, "hf_source": str(plan.model.hf_source)},
    )

