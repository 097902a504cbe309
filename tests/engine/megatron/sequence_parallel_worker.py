"""One rank of a tensor-parallel forward and backward on the CPU, for test_sequence_parallel.py.

Run as `torchrun --nproc-per-node 2 sequence_parallel_worker.py --hf HF_DIR --tokens TOKENS.pt --out OUT
--tp 2` (sequence parallel is on whenever TP > 1, as every recipe with TP > 1 has it). Every rank loads its
shard of a tiny HF model on the engine's local layer spec (float32) inside Megatron-Core's
`DistributedDataParallel`. Once on the token rows and once on the same tokens as one packed stream of
documents (THD, as training feeds the model), it runs a forward pass to the full-vocabulary logits,
back-propagates their summed next-token cross-entropy, and sums the gradients of the parameters marked
`sequence_parallel` over the TP group with `_allreduce_non_tensor_model_parallel_grads`: the step of
Megatron-Core's `finalize_model_grads` that does this in training. (The step before it, DDP's gradient sync
over data-parallel replicas, has nothing to do at DP 1 and reads `torch.cuda.current_stream()`, which the CPU
lacks.) Rank R writes `OUT/rank<R>.pt`: each batch's logits and norm-weight gradients, the norm weights'
`sequence_parallel` marks and the shape of the first layer's norm input (the sequence shard this rank saw).

`run(...)` is the same work in an already set-up process; the test calls it in-process for the TP=1
reference. The CPU accommodations are the test fixture's (conftest.py, reused through
parallel_convert_worker's set-up).
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from fp32_megatron_model import fp32_megatron_model, unwrap  # this script's folder is sys.path[0]
from parallel_convert_worker import cpu_megatron

NORM_WEIGHTS = ("input_layernorm.weight", "pre_mlp_layernorm.weight", "final_layernorm.weight", "q_layernorm.weight",
                "k_layernorm.weight")
"""Endings of the norm weights: under tensor parallel each rank's gradient of them is a partial sum (the first
three see only its sequence shard, the query/key norms only its heads)."""
DOCUMENTS = (23, 34, 23)
"""Document lengths of the packed stream the token rows are laid into (their total is the tokens')."""


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf", type=Path, required=True, help="tiny HF model folder (float32)")
    parser.add_argument("--tokens", type=Path, required=True, help="torch.save'd [batch, seq] int64 token ids")
    parser.add_argument("--out", type=Path, required=True, help="where each rank writes rank<R>.pt")
    parser.add_argument("--tp", type=int, default=2, help="tensor model parallel size (sequence parallel if > 1)")
    return parser.parse_args(argv)


def ddp_model(hf: Path, tp: int):
    """The model in Megatron-Core's DDP wrapper (the gradient step reads its config and `main_grad` buffers)."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

    _, models = fp32_megatron_model(hf, tensor_model_parallel_size=tp, sequence_parallel=tp > 1,
                                    parallel_output=False)
    model = unwrap(models[0])
    return DistributedDataParallel(config=model.config, ddp_config=DistributedDataParallelConfig(), module=model)


def _norm_input_shape(model, tokens: torch.Tensor) -> list[int]:
    seen = []
    layer_norm = unwrap(model).decoder.layers[0].input_layernorm
    handle = layer_norm.register_forward_pre_hook(lambda _module, args: seen.append(list(args[0].shape)))
    try:
        with torch.no_grad():
            model(input_ids=tokens, position_ids=_positions(tokens), attention_mask=None)
    finally:
        handle.remove()
    return seen[0]


def _positions(tokens: torch.Tensor) -> torch.Tensor:
    return torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1)


def _packed(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, object]:
    """The rows laid end to end as one stream of DOCUMENTS (THD, as training feeds the model): ids, positions
    and packing parameters."""
    from megatron.core.packed_seq_params import PackedSeqParams

    assert sum(DOCUMENTS) == tokens.numel()
    cu = torch.tensor([0, *torch.tensor(DOCUMENTS).cumsum(0).tolist()], dtype=torch.int32)
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=max(DOCUMENTS),
                             max_seqlen_kv=max(DOCUMENTS))
    positions = torch.cat([torch.arange(length) for length in DOCUMENTS])[None]
    return tokens.reshape(1, -1), positions, params


def _step(model, tokens: torch.Tensor, positions: torch.Tensor, packed_seq_params=None) -> dict:
    """Logits, and every norm weight's gradient after the backward and the TP gradient step."""
    from megatron.core.distributed.finalize_model_grads import _allreduce_non_tensor_model_parallel_grads

    model.zero_grad_buffer()
    logits = model(input_ids=tokens, position_ids=positions, attention_mask=None, packed_seq_params=packed_seq_params)
    labels = torch.roll(tokens, shifts=-1, dims=1)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum").backward()
    _allreduce_non_tensor_model_parallel_grads([model], model.config)
    return {"logits": logits.detach(), "norm_grads": {name: param.main_grad.clone() for name, param in
                                                      unwrap(model).named_parameters() if name.endswith(NORM_WEIGHTS)}}


def run(hf: Path, tokens: torch.Tensor, tp: int) -> dict:
    """Both kinds of batch (`rows`, `packed`), norm marks and the first norm's input shape."""
    model = ddp_model(hf, tp)
    marks = {name: getattr(param, "sequence_parallel", None) for name, param in unwrap(model).named_parameters()
             if name.endswith(NORM_WEIGHTS)}
    return {"rows": _step(model, tokens, _positions(tokens)), "packed": _step(model, *_packed(tokens)),
            "norm_marks": marks, "norm_input_shape": _norm_input_shape(model, tokens)}


def main(argv: list[str]) -> int:
    args = _parse(argv)
    with cpu_megatron(args.tp, 1):
        result = run(args.hf, torch.load(args.tokens), args.tp)
        torch.save(result, args.out / f"rank{dist.get_rank()}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
