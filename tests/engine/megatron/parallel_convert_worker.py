"""One rank of an HF -> Megatron (TP/PP split) -> HF conversion on the CPU, for test_convert_parallel_cpu.py.

Run as `torchrun --nproc-per-node 2 --master-addr 127.0.0.1 --master-port PORT parallel_convert_worker.py
--hf HF_DIR --tokens TOKENS.pt --out OUT --tp 2 --pp 1`. Every rank loads its shard of the HF weights with
Megatron-Bridge's AutoBridge (local SDPA layer spec, float32), runs one forward pass on the token batch and
exports the model back to HF (a collective gather). Rank 0 writes `OUT/hf/`; the last pipeline stage's
first rank writes `OUT/logits.pt` (full vocabulary); every rank writes `OUT/shards_rank<R>.json`, the
local shapes of its parameters, so the test sees the model really was split.

The CPU accommodations are the test fixture's (conftest.py), applied here in `main` only, plus one for
the pipeline: Megatron-Core's schedules allocate a token counter with a literal `device="cuda"`
(`forward_backward_no_pipelining` and `forward_backward_pipelining_without_interleaving`, schedules.py),
so the single forward pass hands activations between stages with Megatron-Core's own `P2PCommunicator`
(unbatched point-to-point ops: the batched path calls `torch.cuda.synchronize()`).
"""

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from conftest import CpuRNGStatesTracker  # this script's folder is sys.path[0]
from fp32_megatron_model import fp32_megatron_model, unwrap


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf", type=Path, required=True, help="tiny HF model folder (float32)")
    parser.add_argument("--tokens", type=Path, required=True, help="torch.save'd [batch, seq] int64 token ids")
    parser.add_argument("--out", type=Path, required=True, help="where the ranks write hf/, logits.pt, shards")
    parser.add_argument("--tp", type=int, default=1, help="tensor model parallel size")
    parser.add_argument("--pp", type=int, default=1, help="pipeline model parallel size")
    return parser.parse_args(argv)


def _cpu_megatron(tp: int, pp: int) -> None:
    """gloo group from torchrun's environment, Megatron parallel state, CPU stand-ins for CUDA-only parts."""
    from primus_bridge.engine.megatron.runtime import prepare_megatron

    prepare_megatron()
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import random as mcore_random

    torch.cuda.current_device = lambda: torch.device("cpu")
    dist.init_process_group("gloo")
    parallel_state.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    tracker = CpuRNGStatesTracker(mcore_random.CudaRNGStatesTracker())
    tracker.add(mcore_random._MODEL_PARALLEL_RNG_TRACKER_NAME, 1234)
    mcore_random._CUDA_RNG_STATE_TRACKER = tracker
    mcore_random._CUDA_RNG_STATE_TRACKER_INITIALIZED = True


@contextlib.contextmanager
def cpu_megatron(tp: int, pp: int):
    """A worker's whole Megatron session on CPU: set up as _cpu_megatron does; on the way out every rank meets
    at a barrier, then the parallel state and the process group are torn down."""
    _cpu_megatron(tp, pp)
    from megatron.core import parallel_state

    yield
    dist.barrier()
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


def _megatron_model(hf: Path, tp: int, pp: int):
    """AutoBridge and this rank's model chunks, HF weights loaded into the TP/PP shards."""
    return fp32_megatron_model(
        hf, tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, pipeline_dtype=torch.float32,
        batch_p2p_comm=False,
        parallel_output=False,  # the output layer gathers the vocabulary shards itself
    )


def _logits(stage, tokens: torch.Tensor) -> torch.Tensor | None:
    """One forward pass through all stages; full-vocabulary logits on the last stage, None elsewhere."""
    from megatron.core import parallel_state
    from megatron.core.pipeline_parallel.p2p_communication import P2PCommunicator

    first, last = parallel_state.is_pipeline_first_stage(), parallel_state.is_pipeline_last_stage()
    p2p = P2PCommunicator(parallel_state.get_pipeline_model_parallel_group(), stage.config)
    positions = torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1)
    hidden_shape = (tokens.shape[1], tokens.shape[0], stage.config.hidden_size)
    with torch.no_grad():
        stage.set_input_tensor(p2p.recv_forward(hidden_shape, first))
        output = stage(input_ids=tokens, position_ids=positions, attention_mask=None)
        p2p.send_forward(output, last)
    return output if last else None


def _write_shards(stage, out: Path) -> None:
    shapes = {name: list(param.shape) for name, param in stage.named_parameters()}
    (out / f"shards_rank{dist.get_rank()}.json").write_text(json.dumps(shapes, indent=1))


def main(argv: list[str]) -> int:
    from megatron.core import parallel_state

    args = _parse(argv)
    with cpu_megatron(args.tp, args.pp):
        bridge, models = _megatron_model(args.hf, args.tp, args.pp)
        stage = unwrap(models[0]).eval()
        _write_shards(stage, args.out)
        logits = _logits(stage, torch.load(args.tokens))
        if logits is not None and parallel_state.get_tensor_model_parallel_rank() == 0:
            torch.save(logits, args.out / "logits.pt")
        bridge.save_hf_pretrained(models, args.out / "hf", show_progress=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
