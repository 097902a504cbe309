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

import torch
import torch.nn.functional as F

from ...config.head_loss import CHUNK_TOKENS


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


def _chunk(hidden, weight, target, with_grad: bool):
    """(loss [c] fp32, d loss / d hidden [c, h] or None) for one chunk of tokens."""
    logits = F.linear(hidden, weight).float()
    in_vocab = (target >= 0) & (target < logits.size(1))
    safe = torch.where(in_vocab, target, torch.zeros_like(target))
    # out of vocabulary: Megatron-Core's cross-entropy reads the max-shifted target logit as 0, i.e. the max
    target_logit = torch.where(in_vocab, logits.gather(1, safe[:, None]).squeeze(1), logits.amax(dim=-1))
    log_sum_exp = torch.logsumexp(logits, dim=-1)
    if not with_grad:
        return log_sum_exp - target_logit, None
    probs = logits.sub_(log_sum_exp[:, None]).exp_()
    probs[torch.arange(probs.size(0), device=probs.device), safe] -= in_vocab.to(probs.dtype)
    return log_sum_exp - target_logit, probs.to(hidden.dtype) @ weight


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
