"""Architecture facts of a dense decoder model, and its parameter counts.

The recipes, the memory planner and the benchmarks read this; it converts from and to a Hugging Face
`config.json` so a local model folder can be planned like a shipped recipe.
"""

from dataclasses import dataclass

# HF model types whose layers are the Llama layout: RMSNorm, RoPE, GQA attention, SwiGLU MLP.
DENSE_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")


@dataclass(frozen=True)
class ModelShape:
    """What the planner needs to know about a model, before any weights are loaded."""

    model_type: str
    """HF model_type: llama, qwen2, qwen3 or mistral."""
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    """KV heads (GQA groups)."""
    ffn_hidden_size: int
    """SwiGLU inner size (each of gate and up projects hidden -> ffn)."""
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float
    tied_embeddings: bool
    hf_id: str | None = None
    """Hugging Face hub id of the base model (None for the locally built demo model)."""
    kv_channels: int | None = None
    """Per-head size when it is not hidden / heads (Qwen3-32B); Megatron's name for HF's head_dim."""
    qkv_bias: bool = False
    """Bias on the Q, K, V projections (Qwen2 / Qwen2.5)."""
    qk_norm: bool = False
    """RMSNorm on Q and K per head (Qwen3)."""

    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @property
    def query_size(self) -> int:
        """Width of Q (and of the attention output): heads x head size."""
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Width of K (and of V): KV groups x head size."""
        return self.num_query_groups * self.head_dim

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """HF module name -> (in_features, out_features) of each projection in one layer."""
        h, q, kv, f = self.hidden_size, self.query_size, self.kv_size, self.ffn_hidden_size
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}

    def layer_params(self) -> int:
        """Parameters of one transformer layer: QKV, output projection, SwiGLU MLP, two RMSNorms."""
        linears = sum(inp * out for inp, out in self.linear_dims().values())
        bias = self.query_size + 2 * self.kv_size if self.qkv_bias else 0
        norms = 2 * self.hidden_size + (2 * self.head_dim if self.qk_norm else 0)
        return linears + bias + norms

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def total_params(self) -> int:
        """All parameters, counting a tied output layer once (as HF does)."""
        output = 0 if self.tied_embeddings else self.embedding_params()
        return self.num_layers * self.layer_params() + self.embedding_params() + output + self.hidden_size

    @classmethod
    def from_hf_config(cls, config: dict, hf_id: str | None = None) -> "ModelShape":
        """From a HF `config.json` dict; ValueError for a model type whose layers are not the Llama layout."""
        model_type = config.get("model_type")
        if model_type not in DENSE_MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not one the planner models "
                             f"(dense {', '.join(DENSE_MODEL_TYPES)})")
        heads = config["num_attention_heads"]
        rope = config.get("rope_parameters") or {}
        return cls(
            model_type=model_type,
            num_layers=config["num_hidden_layers"],
            hidden_size=config["hidden_size"],
            num_attention_heads=heads,
            num_query_groups=config.get("num_key_value_heads") or heads,
            ffn_hidden_size=config["intermediate_size"],
            vocab_size=config["vocab_size"],
            max_position_embeddings=config["max_position_embeddings"],
            rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
            hf_id=hf_id,
            kv_channels=config.get("head_dim") if config.get("head_dim") != config["hidden_size"] // heads else None,
            qkv_bias=model_type == "qwen2" or bool(config.get("attention_bias", False)),
            qk_norm=model_type == "qwen3",
        )

    def hf_config(self, **overrides):
        """A transformers config of this shape (e.g. to build a randomly initialised model of it)."""
        from transformers import AutoConfig

        values = {
            "num_hidden_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_query_groups,
            "intermediate_size": self.ffn_hidden_size,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "tie_word_embeddings": self.tied_embeddings,
            "head_dim": self.head_dim,
        }
        if self.model_type == "llama":
            values["attention_bias"] = self.qkv_bias
        return AutoConfig.for_model(self.model_type, **{**values, **overrides})
