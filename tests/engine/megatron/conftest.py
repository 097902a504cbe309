"""CPU accommodations for Megatron-Core in tests (never in the product path).

Megatron-Core assumes CUDA in a few places that a CPU test reaches: `torch.cuda.current_device()`
(RoPE frequencies, the global memory buffer), the CUDA RNG tracker, and the default causal mask
(built on "cuda"; tests pass an explicit mask to DotProductAttention). A one-process gloo group
with Megatron's parallel state stands in for the launcher.
"""

import contextlib

import pytest
import torch

REPO_TOKENIZER = "examples/tokenizer"


class CpuRNGStatesTracker:
    """Megatron's model-parallel RNG tracker, on the CPU generator."""

    def __init__(self, base):
        self._base = base

    def __getattr__(self, name):
        return getattr(self._base, name)

    def add(self, name, seed):
        saved = torch.get_rng_state()
        torch.manual_seed(seed)
        self._base.states_[name] = torch.get_rng_state()
        torch.set_rng_state(saved)

    @contextlib.contextmanager
    def fork(self, name="model-parallel-rng"):
        saved = torch.get_rng_state()
        torch.set_rng_state(self._base.states_[name])
        try:
            yield
        finally:
            self._base.states_[name] = torch.get_rng_state()
            torch.set_rng_state(saved)


@pytest.fixture(scope="module")
def megatron_cpu():
    """Megatron-Bridge imported, torch.distributed (gloo, 1 rank) and model parallel state set up on the CPU.

    Module scope: torn down after each test module, so other test folders find no process group.
    """
    import torch.distributed as dist

    from primus_bridge.engine.megatron.runtime import prepare_megatron

    prepare_megatron()
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import random as mcore_random

    patcher = pytest.MonkeyPatch()
    patcher.setattr(torch.cuda, "current_device", lambda: torch.device("cpu"))
    dist.init_process_group("gloo", store=dist.HashStore(), world_size=1, rank=0)
    parallel_state.initialize_model_parallel()
    tracker = CpuRNGStatesTracker(mcore_random.CudaRNGStatesTracker())
    tracker.add(mcore_random._MODEL_PARALLEL_RNG_TRACKER_NAME, 1234)
    patcher.setattr(mcore_random, "_CUDA_RNG_STATE_TRACKER", tracker)
    patcher.setattr(mcore_random, "_CUDA_RNG_STATE_TRACKER_INITIALIZED", True)
    yield
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()
    patcher.undo()


@pytest.fixture(scope="session")
def tokenizer_dir(repo):
    return repo / REPO_TOKENIZER


@pytest.fixture(scope="session")
def repo():
    from pathlib import Path

    return Path(__file__).resolve().parents[3]
