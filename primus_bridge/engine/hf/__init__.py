"""The single-node hf engine (Transformers + PEFT): CPU demo and CI, small single-GPU jobs, benchmark baseline."""

from .engine import HFEngine

ENGINE = HFEngine()

__all__ = ["ENGINE", "HFEngine"]
