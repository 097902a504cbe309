"""The demo model: the tiny random-weight Llama that `make demo` builds (primus_bridge.models.tiny).

CPU-friendly: no GPU type is needed, and every GPU type gets the same settings (TP1 PP1, one
process is enough). It has no hub id; the demo builds it locally with the project tokenizer.
"""

from primus_bridge.models.tiny import TinyLlamaSpec

from ._base import ModeDefaults, Recipe, SizeClass, Tuning
from primus_bridge.models.shape import ModelShape

# The project tokenizer (examples/tokenizer) has under 2,048 tokens; the built model's vocabulary is
# exactly len(tokenizer), so planning with 2,048 is a slight over-estimate.
TOKENIZER_VOCAB_BOUND = 2048

_SPEC = TinyLlamaSpec()

SHAPE = ModelShape(
    model_type="llama", num_layers=_SPEC.num_hidden_layers, hidden_size=_SPEC.hidden_size,
    num_attention_heads=_SPEC.num_attention_heads, num_query_groups=_SPEC.num_key_value_heads,
    ffn_hidden_size=_SPEC.intermediate_size, vocab_size=TOKENIZER_VOCAB_BOUND,
    max_position_embeddings=_SPEC.max_position_embeddings, rope_theta=10000.0, tied_embeddings=False,
)

SIZE = SizeClass(
    sft={0: Tuning()},
    lora={0: Tuning()},
    sft_defaults=ModeDefaults(lr=1.0e-3, global_batch=16, train_iters=100, warmup=10),
    lora_defaults=ModeDefaults(lr=2.0e-3, global_batch=16, train_iters=100, warmup=10),
)

RECIPE = Recipe(name="tiny", shape=SHAPE, size=SIZE, template="chatml", seq_length=256, cpu_friendly=True)
