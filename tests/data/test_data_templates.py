"""Each named template renders its model family's exact text: checked against apply_chat_template with the
family's Jinja template written out here, and the token ids equal tokenizing that text."""

import copy

import pytest

from primus_bridge.config.sections.data import DataConfig
from primus_bridge.config import ConfigError
from primus_bridge.data.encode import SampleEncoder
from primus_bridge.data.records import Conversation, Turn
from primus_bridge.data.templates import get_template

CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
    " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN2_JINJA = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
MISTRAL_JINJA = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}"
)
FAMILY = {  # template -> (Jinja, bos_token the family's tokenizer has, whether system prompts are rendered)
    "chatml": (CHATML_JINJA, "<s>", True),
    "qwen2": (QWEN2_JINJA, "<s>", True),
    "llama3": (LLAMA3_JINJA, "<|begin_of_text|>", True),
    "mistral": (MISTRAL_JINJA, "<s>", False),
}
CONVERSATIONS = [
    Conversation(None, (Turn("What is 2 + 2?", "2 + 2 = 4."),), "t:1", 0),
    Conversation("You are brief.", (Turn("Hi!", "Hello!"), Turn("Capital of Japan?", "Tokyo.")), "t:2", 1),
    Conversation(" Padded system ", (Turn("  spaced question \n", "\n spaced answer  "),), "t:3", 2),
    Conversation("你是助手。", (Turn("把下面的词翻译成英文。", "apple", "苹果"), Turn("再来一个", "water")), "t:4", 3),
]


def family_tokenizer(tokenizer, name: str):
    jinja, bos, _ = FAMILY[name]
    family = copy.deepcopy(tokenizer)
    family.chat_template, family.bos_token = jinja, bos
    return family


@pytest.mark.parametrize("name", sorted(FAMILY))
@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_named_template_equals_the_family_chat_template(tokenizer, name, index):
    conversation = CONVERSATIONS[index]
    if conversation.system is not None and not FAMILY[name][2]:
        pytest.skip("Mistral's template has no system role (see test_mistral_system_prompt)")
    family = family_tokenizer(tokenizer, name)
    expected = family.apply_chat_template(conversation.messages(), tokenize=False)
    rendered = get_template(name, tokenizer).render(conversation)
    assert rendered.text == expected
    encoder = SampleEncoder(tokenizer, get_template(name, tokenizer), DataConfig(seq_length=512))
    (sample,) = encoder.encode([(conversation, rendered)])
    assert sample.ids == tokenizer(expected, add_special_tokens=False)["input_ids"]


def test_tokenizer_template_uses_the_tokenizers_own_chat_template(tokenizer):
    for conversation in CONVERSATIONS:
        rendered = get_template("tokenizer", tokenizer).render(conversation)
        assert rendered.text == tokenizer.apply_chat_template(conversation.messages(), tokenize=False)
        assert rendered == get_template("chatml", tokenizer).render(conversation)


def test_tokenizer_template_spans_follow_a_llama3_chat_template(tokenizer):
    family = family_tokenizer(tokenizer, "llama3")
    for conversation in CONVERSATIONS:
        via_tokenizer = get_template("tokenizer", family).render(conversation)
        named = get_template("llama3", tokenizer).render(conversation)
        assert via_tokenizer.text == named.text and via_tokenizer.responses == named.responses


def test_alpaca_text_without_and_with_input():
    tok = type("T", (), {"eos_token": "</s>", "bos_token": "<s>", "name_or_path": "t",
                         "encode": lambda self, t, add_special_tokens: [0]})()
    alpaca = get_template("alpaca", tok)
    plain = alpaca.render(Conversation(None, (Turn("Name a color.", "Red."),), "t", 0))
    assert plain.text == (
        "<s>Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nName a color.\n\n### Response:\nRed.</s>")
    with_input = alpaca.render(Conversation(None, (Turn("Translate.", "apple", "苹果"),), "t", 0))
    assert with_input.text == (
        "<s>Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate.\n\n"
        "### Input:\n苹果\n\n### Response:\napple</s>")
    assert [with_input.text[a:b] for a, b in with_input.responses] == ["apple</s>"]


def test_alpaca_system_and_history():
    tok = type("T", (), {"eos_token": "</s>", "bos_token": None, "name_or_path": "t",
                         "encode": lambda self, t, add_special_tokens: [0]})()
    rendered = get_template("alpaca", tok).render(Conversation("Be brief.", (Turn("a", "b"), Turn("c", "d")), "t", 0))
    assert rendered.text == ("Be brief.\n\n### Instruction:\na\n\n### Response:\nb</s>\n\n"
                             "### Instruction:\nc\n\n### Response:\nd</s>")
    assert [rendered.text[a:b] for a, b in rendered.responses] == ["b</s>", "d</s>"]


def test_mistral_system_prompt_goes_before_the_first_user_message(tokenizer):
    rendered = get_template("mistral", tokenizer).render(CONVERSATIONS[1])
    assert rendered.text == ("<s>[INST] You are brief.\n\nHi! [/INST]Hello!</s>"
                             "[INST] Capital of Japan? [/INST]Tokyo.</s>")


def test_template_whose_markers_the_tokenizer_lacks_is_refused(tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bare = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>")
    with pytest.raises(ConfigError, match="template 'llama3' writes <\\|begin_of_text\\|>"):
        get_template("llama3", bare)
    with pytest.raises(ConfigError, match="unknown template 'vicuna'"):
        get_template("vicuna", tokenizer)
