"""Build the project tokenizer in examples/tokenizer/: `python -m primus_bridge.data.build_tokenizer`.

A byte-level BPE trained with `tokenizers` on the shipped sample data, with the special tokens of every
prompt template, saved as a `transformers` fast tokenizer whose chat template is ChatML. The build is
deterministic: the same sample files give byte-identical tokenizer files.
"""

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from ..utils.atomic import atomic_dir

REPO = Path(__file__).resolve().parents[2]
SAMPLE_FILES = (REPO / "examples/data/alpaca_sample.jsonl", REPO / "examples/data/sharegpt_sample.jsonl")
DEFAULT_OUT = REPO / "examples/tokenizer"
VOCAB_SIZE = 8192

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = [
    PAD, BOS, EOS,
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "[INST]", "[/INST]",
]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Scaffolding text of the prompt templates, so their words are whole tokens too.
TEMPLATE_TEXT = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.",
    "### Instruction:\n", "### Input:\n", "### Response:\n", "system\n", "user\n", "assistant\n",
    "You are a helpful assistant.",
]


def string_leaves(value) -> Iterator[str]:
    """Every string inside a JSON value, in document order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from string_leaves(item)


def training_texts(files=SAMPLE_FILES) -> Iterator[str]:
    yield from TEMPLATE_TEXT
    for path in files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield from string_leaves(json.loads(line))


def train_bpe(texts: Iterator[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """Byte-level BPE; offsets are not trimmed so every character maps to a token (exact loss masks)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def build(out: Path = DEFAULT_OUT, files=SAMPLE_FILES) -> Path:
    from transformers import PreTrainedTokenizerFast

    backend = train_bpe(training_texts(files))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        chat_template=CHATML_TEMPLATE, model_max_length=4096, clean_up_tokenization_spaces=False,
    )
    with atomic_dir(out, replace=True) as tmp:
        tokenizer.save_pretrained(str(tmp))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m primus_bridge.data.build_tokenizer", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    out = build(args.out)
    print(f"tokenizer written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
