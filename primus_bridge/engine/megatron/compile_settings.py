"""How the engine compiles its own GPU kernels (the FP8 frozen-base linear, the RoPE rotation): one graph per shape,
its Triton kernels tuned when compiled.

Why static shapes: Inductor then writes and tunes each kernel for the one size it meets, not for any. Measured on an
H100 (2026-12-06, benchmarks/reports/megatron-engine/):
- the FP8 linear (`test_fp8_compile_variants_speed`, session 7): an 8B layer's four base linears (4,096 tokens,
  forward + input gradient) took 4.06 ms with dynamic shapes, 3.66 ms static and 3.51 ms static and tuned; the
  quantizations then ran at the speed of a plain cast and the re-layout at that of a copy;
- the RoPE rotation (`test_rotation_compile_variants_speed`, session 8): the 8B queries | keys at 4,096 tokens,
  forward + backward, took 0.275 | 0.076 ms dynamic, 0.071 | 0.022 static and 0.060 | 0.021 static and tuned,
  against 0.052 | 0.017 for a clone of the same tensors (one read and one write each way).
The chunked head loss's chunk kernels (chunked_head_loss.py) keep torch.compile's default shapes: timed so in session
8 (2.2-2.9x the eager chunk), their static-and-tuned variant not yet.
"""

import torch

STATIC_TUNED = {"dynamic": False, "fullgraph": True, "options": {"coordinate_descent_tuning": True}}
"""torch.compile's settings for the engine's kernels."""

GRAPHS_PER_FUNCTION = 32
"""Dynamo's recompile limit (per compiled function) while the engine's kernels run. A graph is compiled for each
shape, grad mode (training, evaluation) and whether the input needs a gradient: the FP8 linear meets up to 12 in a
Llama model (4 linear shapes; under LoRA the first layer's input may need none, its embedding and norm being frozen),
the rotation 4 (queries and keys, training and evaluation) per micro-batch length, past torch's default of 8, beyond
which a `fullgraph` compile fails (torch 2.14 raises FailOnRecompileLimitHit)."""


def allow_a_graph_per_shape() -> None:
    """Raise Dynamo's recompile limit to GRAPHS_PER_FUNCTION (never lower it); it applies to each compiled function
    alone, so other functions only keep their compiled graphs longer."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, GRAPHS_PER_FUNCTION)
