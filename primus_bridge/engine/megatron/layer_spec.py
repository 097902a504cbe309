"""Which Megatron-Core layer spec a model is built with: `model.transformer_impl`.

- transformer_engine: Megatron-Bridge's default TE spec (fused kernels, FP8, context parallel).
- local: Megatron-Core's local spec (plain torch modules) with core attention replaced, through
  `ModuleSpec`, by `SDPACoreAttention`; runs on any CUDA or ROCm PyTorch build.
- auto: transformer_engine when TE imports, else local.
"""

from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

from ...config import ConfigError
from megatron.core.transformer import ModuleSpec

from .attention import SDPACoreAttention
from .te_compat import transformer_engine_available


def resolve_transformer_impl(requested: str) -> str:
    """'transformer_engine' or 'local' for the config's `auto | transformer_engine | local`."""
    if requested == "auto":
        return "transformer_engine" if transformer_engine_available() else "local"
    if requested == "transformer_engine" and not transformer_engine_available():
        raise ConfigError("model.transformer_impl: transformer_engine, but TransformerEngine does not import "
                         "here; install it or use transformer_impl: local (or auto)")
    return requested


def local_sdpa_layer_spec(provider) -> ModuleSpec:
    """Megatron-Core's local GPT layer spec with SDPA core attention (a `transformer_layer_spec` callable)."""
    spec = get_gpt_layer_local_spec(
        num_experts=provider.num_moe_experts,
        moe_grouped_gemm=provider.moe_grouped_gemm,
        qk_layernorm=provider.qk_layernorm,
        normalization=provider.normalization,
    )
    spec.submodules.self_attention.submodules.core_attention = SDPACoreAttention
    return spec


def use_local_spec(provider) -> None:
    """Point a Megatron-Bridge model provider at the local SDPA spec and turn off TE/Apex-only fusions."""
    provider.transformer_layer_spec = local_sdpa_layer_spec
    provider.gradient_accumulation_fusion = False
    provider.apply_rope_fusion = False
    provider.masked_softmax_fusion = False
    provider.persist_layer_norm = False
    provider.use_transformer_engine_full_layer_spec = False
    provider.use_te_rng_tracker = False
