"""Random-weight HF Llama checkpoints of a given shape, built where they will run (GPU: bf16, on the device).

`python -m primus_bridge.bench.build_model --shape llama3-8b --tokenizer DIR --out DIR --device cuda --dtype bf16`
runs in its own process so the harness itself never holds GPU memory.
"""

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..utils.atomic import atomic_dir
from .shapes import ModelShape, get_shape

BUILD_KEY_FILE = "primus_bench_build.json"
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def build_key(shape: ModelShape, tokenizer_dir: Path, dtype: str, seed: int) -> dict:
    return {"shape": asdict(shape), "tokenizer_sha256": _digest(tokenizer_dir), "dtype": dtype, "seed": seed}


def is_built(out: Path, key: dict) -> bool:
    try:
        return json.loads((out / BUILD_KEY_FILE).read_text()) == key
    except (OSError, ValueError):
        return False


def build_random_llama(shape: ModelShape, tokenizer_dir: Path, out: Path, device: str, dtype: str,
                       seed: int = 0) -> Path:
    """Initialise LlamaForCausalLM from its config (on `device`, in `dtype`) and save it with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    if len(tokenizer) > shape.vocab_size:
        raise ValueError(f"tokenizer {tokenizer_dir} has {len(tokenizer)} tokens, more than the "
                         f"shape's vocabulary ({shape.vocab_size})")
    config = shape.hf_config(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, TORCH_DTYPES[dtype]))
    with atomic_dir(out, replace=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / BUILD_KEY_FILE).write_text(json.dumps(build_key(shape, tokenizer_dir, dtype, seed), indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m primus_bridge.bench.build_model", description=__doc__)
    parser.add_argument("--shape", required=True)
    parser.add_argument("--tokenizer", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(TORCH_DTYPES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    shape = get_shape(args.shape)
    if not is_built(args.out, build_key(shape, args.tokenizer, args.dtype, args.seed)):
        build_random_llama(shape, args.tokenizer, args.out, args.device, args.dtype, args.seed)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
