"""One optimizer step over a global batch, and the validation loss.

Loss = (sum of token losses) / (trained tokens of the whole global batch, all ranks and micro-batches),
so gradient accumulation over micro-batches equals one big batch exactly. DDP averages gradients over
ranks, so each rank scales its backward by world_size / global_tokens to undo that average.
"""

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from .batches import Batch
from .distributed import DistEnv, all_reduce_sum
from .loss import token_loss_sum
from .precision import Precision


@dataclass
class StepStats:
    loss: float
    trained_tokens: int
    grad_norm: float
    lr: float


def _forward_loss_sum(model, batch: Batch, precision: Precision, device: torch.device,
                      logits_to_keep: bool, fused_loss: bool = False) -> torch.Tensor:
    """Sum of token losses; with `logits_to_keep` the LM head runs only at positions some row trains on.

    With `fused_loss` the model's forward computes it (liger-kernel's fused linear cross-entropy, see
    liger.py): it takes the already-shifted labels as `shift_labels`, and `num_items_in_batch=1` makes its
    reduction the sum, as token_loss_sum's."""
    labels, extra = batch.labels, {}
    if logits_to_keep:
        keep = (labels != -100).any(dim=0).nonzero().squeeze(-1)
        labels, extra = labels[:, keep], {"logits_to_keep": keep}
    with precision.autocast(device):
        if fused_loss:
            return model(**batch.model_inputs(), use_cache=False, shift_labels=labels, num_items_in_batch=1,
                         skip_logits=True, **extra).loss.float()
        logits = model(**batch.model_inputs(), use_cache=False, **extra).logits
    return token_loss_sum(logits, labels)


def _no_sync(model, last: bool):
    """Skip DDP's gradient all-reduce on all but the last micro-batch of a step."""
    return model.no_sync() if hasattr(model, "no_sync") and not last else contextlib.nullcontext()


def train_step(model, optimizer, scheduler, batches: list[Batch], env: DistEnv, precision: Precision,
               clip_grad: float, logits_to_keep: bool, fused_loss: bool = False) -> StepStats:
    local_tokens = torch.stack([b.trained_tokens for b in batches]).sum()
    global_tokens = int(all_reduce_sum(local_tokens, env).item())
    scale = env.world_size / max(global_tokens, 1)
    loss_sum = torch.zeros((), device=env.device)
    for index, batch in enumerate(batches):
        with _no_sync(model, last=index == len(batches) - 1):
            micro_sum = _forward_loss_sum(model, batch, precision, env.device, logits_to_keep, fused_loss)
            (micro_sum * scale).backward()
        loss_sum += micro_sum.detach()
    params = [p for p in model.parameters() if p.requires_grad]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_grad if clip_grad > 0 else float("inf"))
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    loss = all_reduce_sum(loss_sum, env).item() / max(global_tokens, 1)
    return StepStats(loss, global_tokens, float(grad_norm), lr)


@dataclass
class EvalLoss:
    loss: float
    """Mean token loss over every evaluated row."""
    by_source: list[float | None]
    """Mean token loss over each data source's rows (a mixture's sources); None where none was evaluated."""


@torch.no_grad()
def evaluate(model, batches: Iterable[tuple[int, Batch]], num_sources: int, env: DistEnv, precision: Precision,
             logits_to_keep: bool, fused_loss: bool = False) -> EvalLoss | None:
    """Mean token loss over the (source index, batch) pairs of every rank, in total and per source; None when
    there is nothing to evaluate. Each batch holds rows of one source."""
    was_training = model.training
    model.eval()
    loss_sums = torch.zeros(num_sources, device=env.device)
    tokens = torch.zeros(num_sources, dtype=torch.long, device=env.device)
    for source, batch in batches:
        loss_sums[source] += _forward_loss_sum(model, batch, precision, env.device, logits_to_keep, fused_loss)
        tokens[source] += batch.trained_tokens
    model.train(was_training)
    tokens, loss_sums = all_reduce_sum(tokens, env).tolist(), all_reduce_sum(loss_sums, env).tolist()
    if not sum(tokens):
        return None
    return EvalLoss(sum(loss_sums) / sum(tokens), [s / n if n else None for s, n in zip(loss_sums, tokens)])
