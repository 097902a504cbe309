"""The project tokenizer: reproducible build, template special tokens, chat template; load_tokenizer errors."""

import filecmp

import pytest

from primus_bridge.config import ConfigError, PrimusConfig
from primus_bridge.data.build_tokenizer import SPECIAL_TOKENS, build
from primus_bridge.data.tokenizer import load_tokenizer

from pipeline_helpers import TOKENIZER_DIR


def test_build_is_reproducible_and_matches_the_committed_files(tmp_path):
    build(tmp_path / "tok")
    names = sorted(p.name for p in TOKENIZER_DIR.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "tok").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(TOKENIZER_DIR, tmp_path / "tok", names, shallow=False)
    assert not mismatch and not errors, f"rebuild with python -m primus_bridge.data.build_tokenizer: {mismatch}"


def test_special_tokens_are_single_ids_and_roles_are_set(tokenizer):
    for token in SPECIAL_TOKENS:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "</s>", "<pad>")
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_byte_level_round_trip_and_chatml_chat_template(tokenizer):
    text = "Translate: 苹果 -> apple, 12 km = 12000 m. émoji 🙂"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"


def test_load_tokenizer_from_model_tokenizer_or_hf_path():
    by_key = load_tokenizer(PrimusConfig.model_validate({"model": {"tokenizer": str(TOKENIZER_DIR)}}))
    by_model = load_tokenizer(PrimusConfig.model_validate({"hf_model_name_or_path": str(TOKENIZER_DIR)}))
    assert by_key.get_vocab() == by_model.get_vocab()


@pytest.mark.parametrize("values, expected", [
    ({}, "model.tokenizer: no tokenizer given"),
    ({"model": {"tokenizer": "/no/such/folder"}}, "is not a folder"),
    ({"hf_model_name_or_path": "no-such-org/no-such-model"}, "not in the local HF cache"),
])
def test_load_tokenizer_errors_name_the_key_and_fix(values, expected):
    with pytest.raises(ConfigError, match=expected):
        load_tokenizer(PrimusConfig.model_validate(values))
