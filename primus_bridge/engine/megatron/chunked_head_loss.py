"""The LM head and its cross-entropy in chunks of tokens, for a frozen head on one tensor-parallel rank.

Why: Megatron-Core computes the whole micro batch's logits, then its cross-entropy keeps an fp32 copy as
the softmax and builds an fp32 gradient in the backward: about 10 bytes per token and vocabulary entry,
4.9 GiB for 4,096 tokens of Llama-3's 128,256-entry vocabulary, most of what separates the 8B LoRA case
from the 0.8x-of-HF memory target on the H200. With the head frozen (LoRA), the hidden states' gradient
is all the backward needs, and it is known in the forward up to a per-token factor: row t of it is
(softmax_t - onehot_t) @ W times the loss's incoming gradient for token t. So each chunk's logits are
built, turned into its loss and that gradient, and freed; the backward multiplies by the per-token
factor. Same matmuls, no recompute; logits exist for CHUNK_TOKENS tokens at a time.

`model.head_loss: chunked` (megatron engine, LoRA, TP 1: the config checks say so), or `auto` (the
default) for a vocabulary of at least AUTO_MIN_VOCAB entries: measured on the H200, Llama-3-8B
(128,256 entries, 4,096-token micro batches) ran 7% faster and 3.9 GiB lighter; a 1,685-entry test
vocabulary saved nothing and ran 8% slower (the head is too small to matter, the per-chunk launches
are not). It is given to Megatron-Core's GPTModel as its `output_processor`. Out-of-vocabulary targets
get the loss Megatron-Core's vocab-parallel cross-entropy gives them (log-sum-exp minus the max logit,
no target in the gradient).
"""

import functools
import os

import torch
import torch.nn.functional as F

from ...config.head_loss import CHUNK_TOKENS

EAGER_HEAD_LOSS_SWITCH = "PRIMUS_BRIDGE_EAGER_HEAD_LOSS"
"""Set to 1: the chunk's loss and gradient eager on the GPU too (A/B measurements of the compiled kernels)."""


class FrozenHeadCrossEntropy(torch.autograd.Function):
    """hidden [s, b, h], weight [V, h] (frozen), labels [b, s] -> per-token loss [b, s] in fp32."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk_tokens):
        s, b, h = hidden.shape
        flat = hidden.reshape(s * b, h)
        targets = labels.transpose(0, 1).reshape(-1)
        losses = torch.empty(s * b, dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(flat) if ctx.needs_input_grad[0] else None
        for start in range(0, s * b, chunk_tokens):
            end = min(start + chunk_tokens, s * b)
            losses[start:end], chunk_grad = _chunk(flat[start:end], weight, targets[start:end], grad is not None)
            if grad is not None:
                grad[start:end] = chunk_grad
        ctx.save_for_backward(grad)
        ctx.shape = (s, b, h)
        return losses.view(s, b).transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_losses):
        (grad,) = ctx.saved_tensors
        per_token = grad_losses.transpose(0, 1).reshape(-1, 1).float()
        return (grad.float() * per_token).to(grad.dtype).view(ctx.shape), None, None, None


def logit_loss_and_gradient(logits: torch.Tensor, target: torch.Tensor, with_grad: bool):
    """(loss [c] fp32, d loss / d logits [c, V] in the logits' dtype or None) from one chunk's logits [c, V]: the
    log-sum-exp minus the target's logit, and the softmax minus the one-hot target, in fp32, rounded once.

    Written as reductions and element-wise expressions only (no in-place update, no scatter), so that on the GPU
    torch.compile (`loss_and_gradient_kernels`) makes it a reduction that reads the logits and an element-wise
    kernel that reads them again and writes the gradient: 6 bytes per logit. Eager, the fp32 copy, log-sum-exp,
    in-place softmax and the cast back move about 44."""
    x = logits.float()
    in_vocab = (target >= 0) & (target < x.size(1))
    safe = torch.where(in_vocab, target, torch.zeros_like(target))
    row_max = x.amax(dim=-1)
    log_sum_exp = row_max + torch.exp(x - row_max[:, None]).sum(dim=-1).log()
    # out of vocabulary: Megatron-Core's cross-entropy reads the max-shifted target logit as 0, i.e. the max
    target_logit = torch.where(in_vocab, x.gather(1, safe[:, None]).squeeze(1), row_max)
    if not with_grad:
        return log_sum_exp - target_logit, None
    columns = torch.arange(x.size(1), device=x.device)
    one_hot = ((columns[None, :] == safe[:, None]) & in_vocab[:, None]).to(x.dtype)
    return log_sum_exp - target_logit, (torch.exp(x - log_sum_exp[:, None]) - one_hot).to(logits.dtype)


@functools.cache
def loss_and_gradient_kernels():
    """`logit_loss_and_gradient` compiled with torch.compile's default shapes (static, then dynamic if a second
    shape comes: the full chunks and a last, shorter one), as timed on the H100 (compile_settings.py)."""
    return torch.compile(logit_loss_and_gradient, fullgraph=True)


def _chunk(hidden, weight, target, with_grad: bool):
    """(loss [c] fp32, d loss / d hidden [c, h] or None) for one chunk of tokens; compiled on the GPU unless
    PRIMUS_BRIDGE_EAGER_HEAD_LOSS=1 (A/B runs), eager elsewhere (the CPU runs it in tests only)."""
    logits = F.linear(hidden, weight)
    compiled = logits.is_cuda and os.environ.get(EAGER_HEAD_LOSS_SWITCH) != "1"
    loss_and_gradient = loss_and_gradient_kernels() if compiled else logit_loss_and_gradient
    loss, logit_grad = loss_and_gradient(logits, target, with_grad)
    return loss, (logit_grad @ weight if with_grad else None)


def chunked_head_output(*, hidden_states, output_layer, output_weight, labels, **_):
    """GPTModel output processor (training forwards with labels and a frozen head): the chunked loss."""
    weight = output_weight if output_weight is not None else output_layer.weight
    return FrozenHeadCrossEntropy.apply(hidden_states, weight, labels, CHUNK_TOKENS)


def _head_weight(model):
    return model.shared_embedding_or_output_weight() if model.share_embeddings_and_output_weights \
        else model.output_layer.weight


def _with_chunked_head(model, args, kwargs, min_vocab: int = 0):
    """Forward pre-hook: the chunked loss where it applies; Megatron-Core's own output path otherwise
    (no labels, evaluation, a trainable head, MuP logit scaling, a vocabulary under `min_vocab`)."""
    head = _head_weight(model)
    if (model.training and kwargs.get("labels") is not None and kwargs.get("output_processor") is None
            and not head.requires_grad and head.shape[0] >= min_vocab
            and not getattr(model.config, "use_mup", False)):
        kwargs["output_processor"] = chunked_head_output
    return args, kwargs


def use_chunked_head_loss(model: list, min_vocab: int = 0) -> list:
    """Megatron-Bridge pre-wrap hook: install `_with_chunked_head` on the chunks that hold the LM head."""
    hook = functools.partial(_with_chunked_head, min_vocab=min_vocab)
    for chunk in model:
        if getattr(chunk, "post_process", False) and not getattr(chunk.config, "mtp_num_layers", None):
            chunk.register_forward_pre_hook(hook, with_kwargs=True)
    return model
