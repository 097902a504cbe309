"""Core attention for Megatron-Core's local layer spec on torch's fused kernels.

Megatron-Core's own local `DotProductAttention` materialises the full [b, heads, s, s] score
matrix (baddbmm + softmax + bmm). On a 1.5B model at seq 4096 it ran 102 TFLOP/s using 133 GiB on
an H200; this module ran 363 TFLOP/s using 33 GiB. It is placed into the layer spec through
`ModuleSpec` (see layer_spec.py) and takes the same constructor and forward arguments.

- Unpacked rows ([s, b, heads, dim]): `scaled_dot_product_attention`, causal, GQA without copying K/V.
- Packed rows (`packed_seq_params.qkv_format == 'thd'`, [t, heads, dim]): no token attends across
  documents. On GPUs (CUDA and ROCm, through Triton): compiled FlexAttention with a document-causal
  block mask built from cu_seqlens. On the CPU, where FlexAttention has no backward: causal SDPA on
  each document in turn (exact too; used by the CPU tests and CPU-only debugging).
"""

import contextlib
import functools

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.utils import divide
from torch.nn.attention.flex_attention import flex_attention

from .document_mask import block_mask_cache

SUPPORTED_MASKS = (AttnMaskType.causal, AttnMaskType.padding_causal)


@functools.cache
def _compiled_flex_attention():
    return torch.compile(flex_attention, dynamic=False)


def run_flex_attention(query, key, value, block_mask, scale, enable_gqa):
    """flex_attention, compiled where it runs on a GPU (eager flex is a slow, forward-only reference)."""
    attend = _compiled_flex_attention() if query.is_cuda else flex_attention
    return attend(query, key, value, block_mask=block_mask, scale=scale, enable_gqa=enable_gqa)


def per_document_attention(query, key, value, cu_seqlens, scale, enable_gqa):
    """[1, heads, t, dim] inputs: causal SDPA on each document's slice, concatenated along t."""
    bounds = cu_seqlens.tolist()
    pieces = [F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                                             scale=scale, enable_gqa=enable_gqa)
              for a, b in zip(bounds[:-1], bounds[1:]) if b > a]  # empty documents pad a graphed run's cu_seqlens
    return torch.cat(pieces, dim=2)


class SDPACoreAttention(MegatronModule):
    """Causal (optionally document-masked) attention; a drop-in for Megatron-Core's DotProductAttention."""

    _block_masks = block_mask_cache()
    """Shared by all layers: one block mask per micro batch (they all receive the same cu_seqlens)."""

    def __init__(self, config: TransformerConfig, layer_number: int, attn_mask_type: AttnMaskType,
                 attention_type: str, attention_dropout: float | None = None,
                 softmax_scale: float | None = None, cp_comm_type: str | None = None,
                 pg_collection: ProcessGroupCollection | None = None):
        super().__init__(config=config)
        _check_supported(config, attn_mask_type)
        if pg_collection is None:
            pg_collection = ProcessGroupCollection.use_mpu_process_groups(required_pgs=["tp"])
        tp_size = pg_collection.tp.size()
        self.heads = divide(config.num_attention_heads, tp_size)
        self.kv_heads = divide(config.num_query_groups, tp_size)
        head_dim = config.kv_channels
        self.softmax_scale = softmax_scale if softmax_scale is not None else head_dim ** -0.5
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        self.layer_number = layer_number

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params: PackedSeqParams | None = None):
        if attention_bias is not None:
            raise ValueError("SDPACoreAttention: attention_bias is not supported")
        if packed_seq_params is not None and packed_seq_params.qkv_format == "thd":
            return self._packed(query, key, value, packed_seq_params)
        return self._unpacked(query, key, value, attention_mask)

    def _unpacked(self, query, key, value, attention_mask):
        """[s, b, heads, dim] -> [s, b, heads*dim]."""
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        mask = None if attention_mask is None else ~attention_mask  # Megatron: True = masked out
        with self._dropout_rng():
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None, scale=self.softmax_scale,
                dropout_p=self.dropout if self.training else 0.0, enable_gqa=self.heads != self.kv_heads)
        seq, batch = query.shape[0], query.shape[1]
        return out.permute(2, 0, 1, 3).reshape(seq, batch, -1)

    def _packed(self, query, key, value, params: PackedSeqParams):
        """[t, heads, dim] -> [t, heads*dim] with a document-causal mask."""
        if self.training and self.dropout > 0:
            raise ValueError("SDPACoreAttention: attention dropout with packed documents is not supported; "
                             "set attention_dropout to 0 or use transformer_impl: transformer_engine")
        cu_seqlens = params.cu_seqlens_q_padded if params.cu_seqlens_q_padded is not None else params.cu_seqlens_q
        total, gqa = query.shape[0], self.heads != self.kv_heads
        q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (query, key, value))
        if query.is_cuda:
            block_mask = self._block_masks.get(cu_seqlens, total)
            out = run_flex_attention(q, k, v, block_mask, self.softmax_scale, gqa)
        else:
            out = per_document_attention(q, k, v, cu_seqlens, self.softmax_scale, gqa)
        return out.squeeze(0).transpose(0, 1).reshape(total, -1)

    def _dropout_rng(self):
        """Attention dropout draws from Megatron's model-parallel RNG stream, as DotProductAttention does."""
        if self.dropout > 0 and self.training and not self.config.sequence_parallel:
            return tensor_parallel.get_cuda_rng_tracker().fork()
        return contextlib.nullcontext()


def _check_supported(config: TransformerConfig, attn_mask_type: AttnMaskType) -> None:
    problems = []
    if config.context_parallel_size != 1:
        problems.append("context_parallel_size > 1 needs TransformerEngine attention "
                        "(model.transformer_impl: transformer_engine)")
    if attn_mask_type not in SUPPORTED_MASKS:
        problems.append(f"attention mask type {attn_mask_type.name} (supported: causal)")
    if getattr(config, "window_size", None) is not None:
        problems.append("sliding-window attention (window_size)")
    if getattr(config, "softmax_type", "vanilla") != "vanilla":
        problems.append(f"softmax_type {config.softmax_type}")
    if problems:
        raise ValueError("the local SDPA attention does not support: " + "; ".join(problems))
