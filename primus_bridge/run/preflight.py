"""What `train` checks before it loads a model or reads a byte of data, so that a run never fails on
its outputs after the compute: every problem is listed together with the config's own (exit code 2).

- the run keeps something: a checkpoint folder or an HF export (`--no_output_ok` for a throw-away run);
- every output folder (checkpoints, export, TensorBoard, profile) can be written, and the checkpoint and
  export folders are in a state this run may write into (output guards, outputs.py);
- the filesystems have room for one checkpoint and the export, by the planner's size estimate
  (`force: true` turns a shortfall into a warning);
- the data cache can be written: the default `.cache/primus-bridge/data` under the working directory falls
  back to the user's cache folder, then the temporary folder; an explicit `data.cache_dir` must be writable;
- a resumed run's config matches its checkpoint's (resume_config.py);
- no option of the other engine is set (it would be dropped without a word);
- the training data exists and the starting HF model's weight files are whole.
"""

import logging
import os
import tempfile
from pathlib import Path

from ..checkpoint import is_export_of, iteration_dir, latest_iteration
from ..checkpoint.integrity import local_model_folder, weight_folder_problems
from ..checkpoint.store import saved_steps
from ..config import ConfigError, PrimusConfig
from ..data.cache import DEFAULT_CACHE_DIR
from ..planner.disk import output_sizes
from ..utils.paths import filesystem_id, free_bytes, write_problem
from .nonfinite import skip_setting_problem
from .outputs import check_export_dir, plan_checkpoint_dir
from .profiler import profile_dir
from .resume_config import check_resume_config, checkpoint_config
from .trackers import missing_package_problems, tracker_folders

log = logging.getLogger("primus_bridge")

GIB = 1024**3


def keep_nothing_problem(cfg: PrimusConfig, engine: str) -> str | None:
    save, exports = cfg.checkpointing.save, cfg.convert_to_hf and cfg.hf_save_path
    if engine == "hf" and exports and not save:
        return "checkpointing.save: the hf engine exports from its final checkpoint; pass --save DIR"
    if save or exports or cfg.checkpointing.no_output_ok:
        return None
    return ("checkpointing.save: not set and no HF export (convert_to_hf): this run would train and keep nothing; "
            "pass --save DIR and/or --convert_to_hf --hf_save_path DIR, or --no_output_ok "
            "(checkpointing.no_output_ok: true) for a throw-away run")


def engine_option_problems(cfg: PrimusConfig, engine: str) -> list[str]:
    """Options of the other engine set away from their defaults: that engine alone reads them, so this run would
    drop them without a word."""
    m = cfg.model
    if engine == "megatron":
        other, fix = "hf", "the megatron engine's attention and kernels follow model.transformer_impl"
        set_away = [("model.liger_kernel", m.liger_kernel, False), ("model.attn_implementation", m.attn_implementation,
                                                                     "auto")]
    else:
        other, fix = "megatron", "the hf engine runs Transformers' own layers and loss, in bf16 or fp32"
        set_away = [("model.transformer_impl", m.transformer_impl, "auto"), ("model.head_loss", m.head_loss, "auto"),
                    ("model.cuda_graph", m.cuda_graph, "none"),
                    ("precision.fp8_frozen_base", cfg.precision.fp8_frozen_base, False)]
    return [f"{key}: {value!r} is an option of the {other} engine and this run uses the {engine} engine ({fix}); "
            f"remove it or set engine: {other}" for key, value, default in set_away if value != default]


def output_folders(cfg: PrimusConfig) -> list[tuple[str, str]]:
    """(config key, folder) of everything the run will write."""
    folders = [("checkpointing.save", cfg.checkpointing.save)]
    if cfg.convert_to_hf:
        folders.append(("hf_save_path", cfg.hf_save_path))
    folders.append(("training.tensorboard_dir", cfg.training.tensorboard_dir))
    folders += tracker_folders(cfg)
    if cfg.profiling.enabled:
        folders.append(("profiling.dir", str(profile_dir(cfg.profiling, cfg.checkpointing.save))))
    return [(key, folder) for key, folder in folders if folder]


def writable_problems(cfg: PrimusConfig) -> dict[str, str]:
    """{config key: problem} for each output folder that cannot be written."""
    return {key: f"{key}: {folder} cannot be written: {problem}; choose a writable folder (in a container, mount "
                 "it writable)" for key, folder in output_folders(cfg) if (problem := write_problem(folder))}


def folder_state_problems(cfg: PrimusConfig, unwritable: dict[str, str]) -> list[str]:
    """The output guards of outputs.py (for folders that can be written), run here with all the other checks."""
    c, problems = cfg.checkpointing, []
    checks = []
    if c.save and "checkpointing.save" not in unwritable:
        checks.append(lambda: plan_checkpoint_dir(c.save, c.resume, c.overwrite))
    if cfg.convert_to_hf and cfg.hf_save_path and "hf_save_path" not in unwritable:
        final = iteration_dir(Path(c.save), cfg.training.train_iters) if c.save else None
        checks.append(lambda: check_export_dir(cfg.hf_save_path, c.overwrite, checkpoint=final))
    for check in checks:
        try:
            check()
        except ConfigError as err:
            problems += err.messages
    return problems


def _size(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 2**20:.1f} MiB"


def space_problems(cfg: PrimusConfig, engine: str) -> list[str]:
    """Room for one checkpoint and the export, per filesystem (a warning only under force)."""
    try:
        sizes = output_sizes(cfg, engine)
    except ValueError as err:
        log.info("disk estimate skipped: %s", err)
        return []
    if sizes is None:
        return []
    needs: dict[int, list[tuple[str, str, int]]] = {}
    checkpoint, export = sizes
    for key, folder, size in (("checkpointing.save", cfg.checkpointing.save, checkpoint),
                              ("hf_save_path", cfg.hf_save_path if cfg.convert_to_hf else None, export)):
        if folder and write_problem(folder) is None:
            needs.setdefault(filesystem_id(folder), []).append((key, folder, size))
    problems = []
    for wanted in needs.values():
        total, free = sum(size for *_, size in wanted), free_bytes(wanted[0][1])
        if free >= total:
            continue
        names = {"checkpointing.save": "one checkpoint", "hf_save_path": "the HF export"}
        what = f"{names[wanted[0][0]]} of this run needs" if len(wanted) == 1 else \
            " and ".join(f"{names[key]} ({_size(size)})" for key, _, size in wanted) + " of this run need"
        message = (f"{wanted[0][0]}: {wanted[0][1]} has {_size(free)} free, but {what} about {_size(total)} "
                   "(planner estimate); free space, point it at a larger volume, or use LoRA; force: true "
                   "(--force) starts anyway")
        if cfg.force:
            log.warning("%s", message)
        else:
            problems.append(message)
    return problems


def cache_fallbacks() -> list[Path]:
    home_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    per_user_temp = Path(tempfile.gettempdir()) / f"primus-bridge-{os.getuid()}"
    return [home_cache / "primus-bridge" / "data", per_user_temp / "data"]


def cache_problem(cfg: PrimusConfig) -> str | None:
    """None when the data cache can be written; an unset cache_dir moves to the first writable fallback."""
    if cfg.data.cache_dir:
        problem = write_problem(cfg.data.cache_dir)
        return f"data.cache_dir: {cfg.data.cache_dir} cannot be written: {problem}; choose a writable folder" \
            if problem else None
    problem = write_problem(DEFAULT_CACHE_DIR)
    if problem is None:
        return None
    for fallback in cache_fallbacks():
        if write_problem(fallback) is None:
            log.warning("data cache: %s cannot be written (%s); caching tokenized data in %s instead (set "
                        "data.cache_dir to choose)", DEFAULT_CACHE_DIR.absolute(), problem, fallback)
            cfg.data.cache_dir = str(fallback)
            return None
    return (f"data.cache_dir: the default {DEFAULT_CACHE_DIR.absolute()} cannot be written ({problem}), nor can "
            f"{', '.join(map(str, cache_fallbacks()))}; set data.cache_dir (--set data.cache_dir=DIR) to a writable "
            "folder")


def resume_problems(cfg: PrimusConfig) -> list[str]:
    """Refused config changes against the newest checkpoint whose config reads (when the run will resume)."""
    c = cfg.checkpointing
    latest = latest_iteration(c.save) if c.save and c.resume else None
    if latest is None:
        return []
    for step in sorted((s for s in saved_steps(Path(c.save)) if s <= latest), reverse=True):
        folder = iteration_dir(Path(c.save), step)
        if checkpoint_config(folder) is not None:
            try:
                check_resume_config(folder, cfg)
            except ConfigError as err:
                return err.messages
            return []
    return []


def input_problems(cfg: PrimusConfig) -> list[str]:
    """The training data exists; the starting HF model's safetensors files are whole (headers only)."""
    problems = []
    if not cfg.data.data_path:
        problems.append("data.data_path: not set; pass --data_path FILE_OR_FOLDER")
    else:
        problems += [f"{key}: {source.path}: no such file or folder; check --data_path"
                     for key, source in cfg.data.keyed_sources() if not Path(source.path).expanduser().exists()]
    folder = local_model_folder(cfg.hf_model_name_or_path) if cfg.hf_model_name_or_path else None
    if folder is not None:
        problems += [f"hf_model_name_or_path: {problem}; re-download or re-save the model"
                     for problem in weight_folder_problems(folder)]
    return problems


def preflight_problems(cfg: PrimusConfig, engine: str) -> list[str]:
    """Every problem train can find before any work (may set data.cache_dir to a writable fallback)."""
    problems = [keep_nothing_problem(cfg, engine), skip_setting_problem(cfg.training.skip_nonfinite_steps, engine),
                cache_problem(cfg)]
    problems = [p for p in problems if p] + engine_option_problems(cfg, engine)
    unwritable = writable_problems(cfg)
    return [*problems, *input_problems(cfg), *unwritable.values(), *folder_state_problems(cfg, unwritable),
            *space_problems(cfg, engine), *resume_problems(cfg), *missing_package_problems(cfg)]


def finished_export(cfg: PrimusConfig) -> Path | None:
    """The export folder when this run already finished and exported its final checkpoint (a rerun has
    nothing left to do), else None."""
    c = cfg.checkpointing
    if not (cfg.convert_to_hf and cfg.hf_save_path and c.save and c.resume):
        return None
    latest = latest_iteration(c.save)
    if latest != cfg.training.train_iters:
        return None
    return Path(cfg.hf_save_path) if is_export_of(cfg.hf_save_path, iteration_dir(Path(c.save), latest)) else None
