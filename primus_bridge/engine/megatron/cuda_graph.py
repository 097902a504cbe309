"""`model.cuda_graph: full_iteration`: each training step's forward and backward passes as one CUDA graph.

Why: at the micro batches fine-tuning fits, a step launches tens of thousands of kernels, many of them short
(adapters, norms, FP8 quantization, RoPE), and the host's launch time rather than the GPU sets the pace (the
8B LoRA FP8 step left the GPU idle half the time). A replayed graph launches the whole step in one call.

What runs is Megatron-Core's `FullCudaGraphWrapper`, which Megatron-Bridge's train and evaluation loops put
around the forward-backward function when `cuda_graph_impl == "full_iteration"`: the first WARMUP_STEPS steps
run eagerly (they compile the Inductor kernels and run every one-time probe), the next is recorded, and every
step from then on copies its micro batches into the same static buffers and replays the recording. The
optimizer step stays outside, eager. What a recording needs, and where the product provides it:

- The same shapes every step. A packed stream always holds micro_batch_size x seq_length tokens; its cu_seqlens
  are padded to one length with empty documents at the end (dataset.py, `static_shapes`), which change no
  token's document.
- No host read of a device value inside the step. Megatron-Bridge reads the micro batch's max_seqlen on the host
  (RoPE's table length); a recorded step cannot copy it from the static GPU buffer, so the dataset leaves it out
  and `StaticStreamForwardStep` gives each micro batch a host constant (`longest_document`). Megatron-Core's NaN /
  Inf checks of each micro batch's loss and of the reduced gradients read on the host too: they are off for
  every run (container.py), and the `nonfinite_grad_norm` entry (compat/grad_norm_check.py) stops the run on the
  step's gradient norm instead, read on the host by the optimizer before its update.
- Random numbers drawn inside the recording advance each replay: Megatron-Bridge switches Megatron-Core's RNG
  tracker to graph-safe generators for any `cuda_graph_impl`; torch registers its default generator itself.
  Megatron-Bridge also refuses to build a graphed model unless TE's RNG tracker is asked for
  (`use_te_rng_tracker`); asking for it without TE gets Megatron-Core's own tracker, graph-safe as above (with TE,
  TE's, which is graph-safe too).
- Memory: the recording allocates from a pool of its own; `FreeCachedMemoryBeforeCapture` hands the eager steps'
  cached blocks back first, so the two do not add up.
- One recording per run: the wrapper keeps its step counter, recordings and static buffers on the class (they
  would outlive a run in the same process, counting its steps on); `fresh_graph_state` clears them at the start.

On an H100 (2026-12-06) a 0.75B Llama shape's 8 full-SFT steps gave the eager run's losses bit for bit with the
graph (tests/engine/megatron/test_cuda_graph_gpu.py), at the same peak memory.
"""

import torch
from megatron.bridge.training.callbacks import Callback, CallbackContext

from ...config import ConfigError, PrimusConfig

KEY = "model.cuda_graph"
WARMUP_STEPS = 1
"""Eager steps before the recording: the first compiles every kernel and runs the one-time probes."""


def longest_document(seq_length: int) -> int:
    """The max_seqlen every micro batch reports under a graph: one more than the longest possible document (a
    document never spans rows, so it holds at most seq_length tokens). It must not equal the stream's length:
    Megatron-Core reads a frequency table of exactly that length as per-token frequencies of the whole stream,
    which for a stream of one row of several documents would be wrong."""
    return seq_length + 1


def graph_enabled(cfg: PrimusConfig) -> bool:
    return cfg.model.cuda_graph != "none"


def check_cuda_graph(cfg: PrimusConfig, transformer_impl: str) -> None:
    """ConfigError where the option cannot apply to this megatron run (what the config alone decides is checked by
    config/checks.py): the layer spec and the device."""
    if not graph_enabled(cfg):
        return
    if transformer_impl != "local":
        raise ConfigError(f"{KEY}: {cfg.model.cuda_graph} is built for the local spec and the model uses "
                          f"TransformerEngine's layers (model.transformer_impl resolves to {transformer_impl}); set "
                          f"model.transformer_impl: local, or {KEY}: none")
    if not torch.cuda.is_available():
        raise ConfigError(f"{KEY}: {cfg.model.cuda_graph} records CUDA graphs and no GPU is visible; set {KEY}: none")


def use_full_iteration_graph(provider) -> None:
    """Megatron's model config: record the forward-backward of every step after WARMUP_STEPS eager ones, from a
    fresh wrapper state (registry entry `full_iteration_graph`, verified before any model is built)."""
    provider.cuda_graph_impl = "full_iteration"
    provider.cuda_graph_warmup_steps = WARMUP_STEPS
    # Megatron-Bridge builds a graphed model only with TE's RNG tracker asked for; where TE is absent Megatron-Core
    # makes its own tracker instead, with graph-safe generators for a graphed run (see the module doc).
    provider.use_te_rng_tracker = True
    provider.register_pre_wrap_hook(fresh_graph_state)


def fresh_graph_state(model: list) -> list:
    """Megatron-Bridge pre-wrap hook: forget any recording, step count and static buffers that a run before this
    one left in this process (Megatron-Core's wrapper keeps them on its classes)."""
    from megatron.core.full_cuda_graph import FullCudaGraphWrapper, StaticBufferLoader

    FullCudaGraphWrapper.curr_iteration = {"training": 0, "validation": 0}
    FullCudaGraphWrapper.cuda_graph = {"training": None, "validation": None}
    FullCudaGraphWrapper.result = {"training": None, "validation": None}
    StaticBufferLoader.static_buffers = {"training": [], "validation": []}
    return model


class _WithHostBound:
    """The data iterator with max_seqlen_q / max_seqlen_kv set to a host constant in every batch."""

    def __init__(self, batches, bound: torch.Tensor):
        self.batches, self.bound = batches, bound

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return {**next(self.batches), "max_seqlen_q": self.bound, "max_seqlen_kv": self.bound}


class StaticStreamForwardStep:
    """finetune()'s forward step for graphed runs: the wrapped step sees every micro batch with max_seqlen set to
    `longest_document(seq_length)` on the host (see the module doc)."""

    def __init__(self, forward_step, seq_length: int):
        self.forward_step = forward_step
        self.bound = torch.tensor(longest_document(seq_length), dtype=torch.int32)

    def __call__(self, state, data_iterator, model, return_schedule_plan: bool = False):
        batches = _WithHostBound(data_iterator, self.bound) if data_iterator is not None else None
        return self.forward_step(state, batches, model, return_schedule_plan)


class FreeCachedMemoryBeforeCapture(Callback):
    """After the last eager step of this process: return the allocator's cached blocks to the device, so the
    recording's own pool can take them."""

    def __init__(self):
        self.steps_run = 0

    def on_train_step_end(self, context: CallbackContext) -> None:
        self.steps_run += 1
        if self.steps_run == WARMUP_STEPS:
            torch.cuda.empty_cache()
