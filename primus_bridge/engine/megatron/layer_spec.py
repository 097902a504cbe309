"""Which Megatron-Core layer spec a model is built with: `model.transformer_impl`.

- transformer_engine: Megatron-Bridge's default TE spec (fused kernels, FP8, context parallel).
- local: Megatron-Core's local spec (plain torch modules) with, through `ModuleSpec`, core attention
  replaced by `SDPACoreAttention` and Megatron-Core's torch norms by `SequenceParallelTorchNorm` (the same
  norms, usable with sequence parallel); runs on any CUDA or ROCm PyTorch build.
- auto: transformer_engine when TE imports, else local.
"""

import torch
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer.torch_norm import WrappedTorchNorm
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build

from ...config import ConfigError
from .attention import SDPACoreAttention
from .compat.te_compat import transformer_engine_available

TORCH_NORMS = {"LayerNorm": torch.nn.LayerNorm, "RMSNorm": torch.nn.RMSNorm}
"""`normalization` -> the torch module Megatron-Core's `WrappedTorchNorm` builds for it."""


def resolve_transformer_impl(requested: str) -> str:
    """'transformer_engine' or 'local' for the config's `auto | transformer_engine | local`."""
    if requested == "auto":
        return "transformer_engine" if transformer_engine_available() else "local"
    if requested == "transformer_engine" and not transformer_engine_available():
        raise ConfigError("model.transformer_impl: transformer_engine, but TransformerEngine does not import "
                         "here; install it or use transformer_impl: local (or auto)")
    return requested


def torch_norm_problems(config) -> list[str]:
    """What of the model's normalisation the torch norms cannot reproduce (empty: they can)."""
    problems = []
    if config.normalization not in TORCH_NORMS:
        problems.append(f"normalization {config.normalization!r} (supported: {', '.join(TORCH_NORMS)})")
    if config.layernorm_zero_centered_gamma:
        problems.append("zero-centred norm weights (layernorm_zero_centered_gamma)")
    if config.memory_efficient_layer_norm:
        problems.append("memory_efficient_layer_norm")
    return problems


class SequenceParallelTorchNorm:
    """Megatron-Core's torch norm (what `WrappedTorchNorm` builds: torch.nn.RMSNorm or LayerNorm with the
    model's eps), also under sequence parallel.

    `WrappedTorchNorm` refuses sequence parallel. A norm works token by token, so on a sequence shard it
    gives the values it gives on the whole sequence; what changes is its weights' gradient: each TP rank
    holds only its shard's part. Marked `sequence_parallel` (as Megatron-Core's Apex norm and TE's norms
    mark theirs), the parameters are summed over the TP group by Megatron-Core's `finalize_model_grads`.
    Built through `__new__` like `WrappedTorchNorm`: the module is a plain torch norm, with the same
    parameter names and checkpoint layout.
    """

    def __new__(cls, config, hidden_size: int, eps: float = 1e-5, **_unused_builder_options) -> torch.nn.Module:
        problems = torch_norm_problems(config)
        if problems:
            raise ValueError("the local layer spec's torch norms do not support: " + "; ".join(problems)
                             + "; use model.transformer_impl: transformer_engine")
        norm = TORCH_NORMS[config.normalization](hidden_size, eps=eps)
        for param in norm.parameters():
            param.sequence_parallel = config.sequence_parallel
        return norm


def _use_sequence_parallel_norms(layer_submodules) -> None:
    """Every torch norm of the layer (input, pre-MLP, query/key) becomes a SequenceParallelTorchNorm."""
    attention = layer_submodules.self_attention.submodules
    for owner, name in ((layer_submodules, "input_layernorm"), (layer_submodules, "pre_mlp_layernorm"),
                        (attention, "q_layernorm"), (attention, "k_layernorm")):
        if getattr(owner, name) is WrappedTorchNorm:
            setattr(owner, name, SequenceParallelTorchNorm)


def local_sdpa_layer_spec(provider, vp_stage: int | None = None) -> TransformerBlockSubmodules:
    """This pipeline stage's decoder block (a `transformer_layer_spec` callable): Megatron-Core's local GPT
    layer with SDPA core attention and SequenceParallelTorchNorm, and that norm after the last layer
    (a layer spec alone would get the block's default final norm, `WrappedTorchNorm`)."""
    layer = get_gpt_layer_local_spec(
        num_experts=provider.num_moe_experts,
        moe_grouped_gemm=provider.moe_grouped_gemm,
        qk_layernorm=provider.qk_layernorm,
        normalization=provider.normalization,
    )
    layer.submodules.self_attention.submodules.core_attention = SDPACoreAttention
    _use_sequence_parallel_norms(layer.submodules)
    layers = get_num_layers_to_build(provider, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[layer] * layers, layer_norm=layer.submodules.input_layernorm)


def accumulate_wgrad_in_matmul(provider, trains_full_weights: bool) -> None:
    """Full-weight training on the local spec: each weight gradient summed into its fp32 main_grad by the matmul
    itself (Megatron-Core's `gradient_accumulation_fusion` on compat/wgrad_accumulation.py's kernels), where that
    works (a GPU). LoRA keeps it off: its frozen base has no main_grad, and the adapters' one-rank fast path
    (compat/lora_fast_path.py) runs only without it."""
    from .compat.wgrad_accumulation import fusion_available

    if provider.transformer_layer_spec is local_sdpa_layer_spec:
        provider.gradient_accumulation_fusion = trains_full_weights and fusion_available()


def use_local_spec(provider) -> None:
    """Point a Megatron-Bridge model provider at the local SDPA spec and turn off TE/Apex-only fusions."""
    provider.transformer_layer_spec = local_sdpa_layer_spec
    provider.gradient_accumulation_fusion = False
    provider.apply_rope_fusion = False
    provider.masked_softmax_fusion = False
    provider.persist_layer_norm = False
    provider.use_transformer_engine_full_layer_spec = False
    provider.use_te_rng_tracker = False
