"""A tiny Llama with random weights and a given tokenizer, saved as a plain HF checkpoint.

It is what `make demo` and the CPU tests fine-tune: small enough for 2 CPU cores, yet a real
`LlamaForCausalLM` that every HF tool (and Megatron-Bridge's Llama bridge) reads.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..utils.atomic import atomic_dir

BUILD_KEY_FILE = "primus_tiny_build.json"
DEFAULT_CACHE = Path(".cache/primus-bridge/models/tiny-llama")


@dataclass(frozen=True)
class TinyLlamaSpec:
    hidden_size: int = 64
    intermediate_size: int = 176
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    initializer_range: float = 0.1
    """Std of the random weights. Llama uses 0.02; with hidden 64 that leaves the frozen LM head a logit range of
    about +-1, too little for LoRA alone to fit the data. 0.1 lets the demo's loss fall clearly in a minute on CPU."""
    seed: int = 0


def _tokenizer_digest(tokenizer_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in tokenizer_dir.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_key(tokenizer_dir: str | Path, spec: TinyLlamaSpec) -> dict:
    """What the checkpoint is made from; a cached build with another key is rebuilt."""
    return {"spec": asdict(spec), "tokenizer_sha256": _tokenizer_digest(Path(tokenizer_dir))}


def llama_config(tokenizer, spec: TinyLlamaSpec):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        initializer_range=spec.initializer_range, tie_word_embeddings=False,
    )


def build_tiny_llama(tokenizer_dir: str | Path, out: str | Path, spec: TinyLlamaSpec = TinyLlamaSpec()) -> Path:
    """Write a randomly initialised tiny Llama plus the tokenizer to `out` (replaced atomically)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(llama_config(tokenizer, spec))
    with atomic_dir(out, replace=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / BUILD_KEY_FILE).write_text(json.dumps(build_key(tokenizer_dir, spec), indent=2) + "\n")
    return Path(out)


def ensure_tiny_llama(tokenizer_dir: str | Path, out: str | Path = DEFAULT_CACHE,
                      spec: TinyLlamaSpec = TinyLlamaSpec()) -> tuple[Path, bool]:
    """(folder, built now?): reuse `out` when it was built from the same spec and tokenizer."""
    out = Path(out)
    try:
        cached = json.loads((out / BUILD_KEY_FILE).read_text())
    except (OSError, ValueError):
        cached = None
    if cached == build_key(tokenizer_dir, spec):
        return out, False
    return build_tiny_llama(tokenizer_dir, out, spec), True
