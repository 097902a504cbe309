"""Decoder shapes the benchmarks build with random weights (no downloads): Llama-style, GQA, SwiGLU.

The numbers come from the recipes (one place for each model's architecture); this module adds what the
benchmarks need of them: the projections' sizes for the FLOP formula and a transformers config.
"""

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    """The numbers that fix a dense GQA decoder's size and its FLOPs."""

    name: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    ffn_hidden_size: int
    vocab_size: int
    tie_embeddings: bool
    max_position_embeddings: int = 131072
    rope_theta: float = 500000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """HF module name -> (in_features, out_features) of each projection in one layer."""
        h, q, kv, f = self.hidden_size, self.num_attention_heads * self.head_dim, self.num_kv_heads * self.head_dim, \
            self.ffn_hidden_size
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}

    def hf_config_dict(self) -> dict:
        """Keyword arguments for transformers.LlamaConfig."""
        return {
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_kv_heads,
            "intermediate_size": self.ffn_hidden_size,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "head_dim": self.head_dim,
        }


SHAPE_RECIPES = {"llama3-8b": "llama3_8b", "llama3.2-1b": "llama32_1b", "llama3.2-3b": "llama32_3b"}
"""Benchmark shape -> the recipe whose architecture numbers it uses (recipes/<name>.py: SHAPE)."""


def from_recipe(name: str, recipe: str) -> ModelShape:
    import recipes

    arch = recipes.recipe(recipe).shape
    return ModelShape(name, arch.hidden_size, arch.num_layers, arch.num_attention_heads, arch.num_query_groups,
                      arch.ffn_hidden_size, arch.vocab_size, arch.tied_embeddings, arch.max_position_embeddings,
                      arch.rope_theta)


SHAPES = {name: from_recipe(name, recipe) for name, recipe in SHAPE_RECIPES.items()}


def get_shape(name: str) -> ModelShape:
    if name not in SHAPES:
        raise KeyError(f"unknown model shape {name!r}; known: {', '.join(sorted(SHAPES))}")
    return SHAPES[name]


def shape_from_hf_config(config_json: Path) -> ModelShape:
    """The shape of a saved HF Llama-style checkpoint (its config.json)."""
    config = json.loads(Path(config_json).read_text(encoding="utf-8"))
    heads = config["num_attention_heads"]
    shape = ModelShape(
        name=Path(config_json).parent.name,
        hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        num_attention_heads=heads,
        num_kv_heads=config.get("num_key_value_heads") or heads,
        ffn_hidden_size=config["intermediate_size"],
        vocab_size=config["vocab_size"],
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_position_embeddings=config.get("max_position_embeddings", 0),
    )
    head_dim = config.get("head_dim") or shape.hidden_size // heads
    if head_dim != shape.head_dim:
        raise ValueError(f"{config_json}: head_dim {head_dim} is not hidden_size / num_attention_heads; "
                         "the benchmark FLOP formula covers the standard Llama layout only")
    return shape
