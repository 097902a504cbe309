"""One rank of a LoRA model split over 2 tensor-parallel ranks on the CPU, for test_lora_tensor_parallel.py.

Run as `torchrun --nproc-per-node 2 ... lora_tp_worker.py --hf HF_DIR --tokens TOKENS.pt --out OUT --targets
q_proj,v_proj`. Every rank loads its shard of the tiny HF Llama (parallel_convert_worker's set-up), applies the
project's per-projection LoRA, gives every adapter weight random values (each rank its own shard), runs one
forward pass and takes part in the export (merged HF model and PEFT adapter, gathered over the ranks).
Rank 0 writes `OUT/logits.pt` and `OUT/export/`.
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from fp32_megatron_model import unwrap  # this script's folder is sys.path[0]
from parallel_convert_worker import _megatron_model, cpu_megatron


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf", type=Path, required=True, help="tiny HF model folder (float32)")
    parser.add_argument("--tokens", type=Path, required=True, help="torch.save'd [batch, seq] int64 token ids")
    parser.add_argument("--out", type=Path, required=True, help="where rank 0 writes logits.pt and export/")
    parser.add_argument("--targets", required=True, help="lora_target_modules, comma-separated")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    """Megatron logits with random adapters, and the PEFT + merged export of the same model."""
    from transformers import AutoTokenizer

    from primus_bridge.config.sections.lora import LoraConfig
    from primus_bridge.engine.megatron.export import export_models
    from primus_bridge.engine.megatron.lora import build_peft

    _, models = _megatron_model(args.hf, 2, 1)
    peft = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_alpha=8, lora_dropout=0.0,
                                 lora_target_modules=args.targets.split(",")))
    models = peft(models, training=False)
    torch.manual_seed(1 + dist.get_rank())
    for name, param in models[0].named_parameters():
        if ".adapter." in name:
            torch.nn.init.normal_(param, std=0.05)
    tokens = torch.load(args.tokens)
    with torch.no_grad():
        logits = unwrap(models[0]).eval()(input_ids=tokens, attention_mask=None,
                                          position_ids=torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1))
    if dist.get_rank() == 0:
        torch.save(logits, args.out / "logits.pt")
    tokenizer = AutoTokenizer.from_pretrained(str(args.hf), local_files_only=True)
    export_models(models, args.hf, args.out / "export", None, tokenizer, peft)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    with cpu_megatron(2, 1):  # imports Megatron-Bridge first (TE placeholders)
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
