"""Refuse damaged starting weights with the file's name: unreadable safetensors files before loading,
NaN / Inf values after (a model that holds them trains and exports NaN from the first step)."""

from pathlib import Path

import torch

from ...config import ConfigError
from ...checkpoint.integrity import file_holding, local_model_folder, weight_folder_problems
from ...run.nonfinite import first_nonfinite_parameter

ADAPTER_FILE = "adapter_model.safetensors"


def check_weight_files(source: str) -> None:
    """ConfigError naming every damaged safetensors file of `source`."""
    folder = local_model_folder(source)
    problems = weight_folder_problems(folder) if folder is not None else []
    if problems:
        raise ConfigError([f"cannot load the model from {source}: {problem}; re-download or re-save it"
                           for problem in problems])


def refuse_nonfinite_weights(model: torch.nn.Module, base_source: str, adapter_dir: Path | None = None) -> None:
    """ConfigError naming the file and tensor when a loaded weight holds NaN or Inf."""
    name = first_nonfinite_parameter(model)
    if name is None:
        return
    if adapter_dir is not None and "lora_" in name:
        where = Path(adapter_dir) / ADAPTER_FILE
    else:
        folder = local_model_folder(base_source)
        found = file_holding(folder, name) if folder is not None else None
        where, name = found if found is not None else (base_source, name)
    raise ConfigError(f"{where}: tensor {name} holds NaN or Inf values; these weights would train and export "
                      "NaN. Use an undamaged copy of the model (re-download it, or re-export it from a good "
                      "checkpoint)")
