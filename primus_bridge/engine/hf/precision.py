"""Mixed precision for the hf engine: bf16 autocast where the device supports it, else fp32."""

import contextlib
from dataclasses import dataclass

import torch

from ...config import ConfigError, PrimusConfig


@dataclass(frozen=True)
class Precision:
    autocast_dtype: torch.dtype | None
    why: str

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)


def choose_precision(cfg: PrimusConfig, device: torch.device) -> Precision:
    """fp32 master weights always; bf16 autocast on a GPU that has bf16, fp32 compute otherwise."""
    if cfg.precision.fp16:
        raise ConfigError("precision.fp16: the hf engine trains in bf16 or fp32; set precision.bf16: true "
                          "(fp32 is used where bf16 is not supported)")
    if not cfg.precision.bf16:
        return Precision(None, "precision: fp32 (precision.bf16 is off)")
    if device.type == "cpu":
        return Precision(None, "precision: fp32 on CPU (bf16 autocast is for GPUs here)")
    if not torch.cuda.is_bf16_supported():
        return Precision(None, "precision: fp32 (this GPU has no bf16)")
    return Precision(torch.bfloat16, "precision: bf16 autocast, fp32 master weights")
