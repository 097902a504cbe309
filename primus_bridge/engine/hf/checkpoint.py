"""What an hf-engine checkpoint holds, and how a run is saved to and restored from one.

iter_NNNNNNN/
  model/                 PEFT adapter (LoRA) or the full model (save_pretrained, safetensors)
  optimizer.pt, scheduler.pt   torch state dicts (tensors and numbers only; loaded with weights_only)
  rng.json               RNG states of every rank
  trainer_state.json     step, consumed samples, loss history
  tokenizer/             the run's tokenizer
  run_config.yaml        the resolved config (secrets redacted)
  primus_bridge.json     the marker (checkpoint/marker.py), written last: engine "hf", step, lora, base_model, ...

A LoRA checkpoint holds the adapter only: the frozen base weights never change, so they stay where
`base_model` (the resolved hf_model_name_or_path) points, and export reads them from there.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ...checkpoint import MARKER_FILE, Marker, write_marker
from ...checkpoint.integrity import json_problem, torch_file_problem, weight_files, weight_folder_problems
from ...checkpoint.marker import ENGINE_CONFIG_FILES, HF_TOKENIZER_DIR
from ...config import PrimusConfig
from ...run.resume_config import config_dump
from ...run.rng import RngState

CONFIG_FILE = ENGINE_CONFIG_FILES["hf"]


@dataclass
class TrainerState:
    step: int = 0
    consumed_samples: int = 0
    losses: list[float] = field(default_factory=list)
    eval_losses: dict[str, float] = field(default_factory=dict)
    world_size: int = 1
    skipped_steps: list[int] = field(default_factory=list)
    """Steps whose loss or gradient norm was not finite and whose update was skipped."""
    config_changes: list[dict] = field(default_factory=list)
    """Config changes accepted on resume: {"step": resumed at, "changes": {key: [old, new]}}."""


def checkpoint_marker(cfg: PrimusConfig, base_model: str, eos_token_id: int | list[int] | None,
                      template: str | None) -> Marker:
    """The marker of this run's checkpoints (step and config changes are filled in at each save)."""
    return Marker(engine="hf", lora=cfg.lora.use_lora, optimizer_state=True, base_model=base_model,
                  tokenizer=HF_TOKENIZER_DIR, config_file=CONFIG_FILE, eos_token_id=eos_token_id, template=template,
                  template_date=cfg.data.template_date)


def config_yaml(cfg: PrimusConfig) -> str:
    return config_dump(cfg)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper."""
    return getattr(model, "module", model)


@dataclass
class TrainingObjects:
    """Everything a checkpoint captures from a live run."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    tokenizer: object
    cfg: PrimusConfig
    marker: Marker


def fill_checkpoint(folder: Path, objects: TrainingObjects, state: TrainerState, rng_by_rank: list[RngState]) -> None:
    """Write every file of one checkpoint into `folder` (a temporary folder; the caller publishes it)."""
    unwrap(objects.model).save_pretrained(folder / "model")
    torch.save(objects.optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(objects.scheduler.state_dict(), folder / "scheduler.pt")
    (folder / "rng.json").write_text(json.dumps([r.to_json() for r in rng_by_rank]))
    (folder / "trainer_state.json").write_text(json.dumps(asdict(state), indent=1) + "\n")
    objects.tokenizer.save_pretrained(folder / HF_TOKENIZER_DIR)
    (folder / CONFIG_FILE).write_text(config_yaml(objects.cfg))
    write_marker(folder, objects.marker.model_copy(update={"step": state.step, "config_changes": state.config_changes}))


def checkpoint_problems(checkpoint: Path) -> list[str]:
    """Every missing or damaged file of an iteration folder (cheap: headers and zip directories only)."""
    model = checkpoint / "model"
    problems = [json_problem(checkpoint / name) for name in (MARKER_FILE, "trainer_state.json", "rng.json")]
    problems += [torch_file_problem(checkpoint / name) for name in ("optimizer.pt", "scheduler.pt")]
    if not weight_files(model):
        problems.append(f"{model}: no *.safetensors weights")
    return [p for p in problems if p] + weight_folder_problems(model)


def read_trainer_state(checkpoint: Path) -> TrainerState:
    return TrainerState(**json.loads((checkpoint / "trainer_state.json").read_text()))


def read_rng(checkpoint: Path, rank: int) -> RngState | None:
    states = json.loads((checkpoint / "rng.json").read_text())
    return RngState.from_json(states[rank]) if rank < len(states) else None


def restore_optimizer(checkpoint: Path, optimizer, scheduler) -> None:
    """Optimizer and LR-scheduler state; the next step's LR comes from this run's schedule (a resume may
    lengthen it: training.train_iters), which for an unchanged schedule is exactly the saved one."""
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    for group, base_lr, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
