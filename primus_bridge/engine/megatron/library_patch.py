"""Replacing one function of Megatron-Core or Megatron-Bridge, once.

Every adaptation of the libraries (packed RoPE, the LoRA fast path, the optimizer's resume, the prebuilt
dataset helpers) swaps one attribute for a function built around the original. The replacement carries
the original as `__wrapped__`, so a second call changes nothing and the original stays reachable.
"""

from collections.abc import Callable


def wrap_once(owner, name: str, make: Callable[[Callable], Callable]) -> Callable:
    """Set `owner.name` to `make(original)` unless it is already a replacement; return what is in place.
    A missing attribute reaches `make` as None, for it to name what it expected."""
    original = getattr(owner, name, None)
    if getattr(original, "__wrapped__", None) is not None:
        return original
    replacement = make(original)
    replacement.__wrapped__ = original
    setattr(owner, name, replacement)
    return replacement
