"""`model.liger_kernel`: the liger-kernel package's kernels on the hf engine's model.

What speed-minded HF + PEFT users run: Triton RMSNorm, SwiGLU and RoPE, and the fused linear cross-entropy,
which computes the LM head and the loss in chunks so the vocabulary-wide logits never exist. Applied to the
loaded model before PEFT wraps it, through liger-kernel's own per-family entry points. With the fused loss the
model's forward returns the loss (step.py passes the shifted labels) instead of logits.
"""

import torch

from ...config import ConfigError

KERNELS = {"rope": True, "rms_norm": True, "swiglu": True, "fused_linear_cross_entropy": True}


def apply_liger(model, device: torch.device) -> None:
    """Patch `model` (a loaded HF causal LM) with liger-kernel's kernels for its family; ConfigError when the
    package, a GPU or kernels for this family are missing."""
    if device.type != "cuda":
        raise ConfigError("model.liger_kernel: liger-kernel's kernels are Triton GPU kernels; this run is on "
                          f"{device.type}. Turn model.liger_kernel off, or run on a GPU")
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except ImportError:
        raise ConfigError("model.liger_kernel: the liger-kernel package is not installed; "
                          "pip install liger-kernel, or turn model.liger_kernel off") from None
    model_type = model.config.model_type
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
    if apply is None:
        raise ConfigError(f"model.liger_kernel: liger-kernel has no kernels for model_type {model_type!r}; "
                          "turn model.liger_kernel off")
    apply(model=model, **KERNELS)
