"""Each named template renders its model family's exact text: checked against apply_chat_template with the
family's Jinja template (official_templates/ or written out here), and the token ids equal tokenizing that text;
and which template `prompt_template: auto` picks, and that the run log and the data report say why."""

import copy

import pytest

from family import official_template
from primus_bridge.config.sections.data import DataConfig
from primus_bridge.config import ConfigError
from primus_bridge.data.encode import SampleEncoder
from primus_bridge.data.records import Conversation, Turn
from primus_bridge.data import prepare_data
from primus_bridge.data.report import format_text
from primus_bridge.data.resolve import resolve_template
from primus_bridge.data.templates import TEMPLATES, get_template
from pipeline_helpers import chat, write_jsonl

CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
    " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
FAMILY = {  # template -> (Jinja, bos_token the family's tokenizer has); the official ones from official_templates/
    "chatml": (CHATML_JINJA, "<s>"),
    "qwen2": (official_template("qwen2"), "<s>"),
    "llama3": (official_template("llama3"), "<|begin_of_text|>"),
    "mistral": (official_template("mistral-v0.2"), "<s>"),
}
CONVERSATIONS = [
    Conversation(None, (Turn("What is 2 + 2?", "2 + 2 = 4."),), "t:1", 0),
    Conversation("You are brief.", (Turn("Hi!", "Hello!"), Turn("Capital of Japan?", "Tokyo.")), "t:2", 1),
    Conversation(" Padded system ", (Turn("  spaced question \n", "\n spaced answer  "),), "t:3", 2),
    Conversation("你是助手。", (Turn("把下面的词翻译成英文。", "apple", "苹果"), Turn("再来一个", "water")), "t:4", 3),
]


def family_tokenizer(tokenizer, name: str):
    jinja, bos = FAMILY[name]
    family = copy.deepcopy(tokenizer)
    family.chat_template, family.bos_token = jinja, bos
    return family


@pytest.mark.parametrize("name", sorted(FAMILY))
@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_named_template_equals_the_family_chat_template(tokenizer, name, index):
    conversation = CONVERSATIONS[index]
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
    assert rendered.text == ("<s> [INST] You are brief.\n\nHi! [/INST] Hello!</s>"
                             " [INST] Capital of Japan? [/INST] Tokyo.</s>")


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


def without_chat_template(tokenizer):
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    return bare


@pytest.mark.parametrize("data_format", ["alpaca", "sharegpt"])
def test_auto_takes_the_tokenizers_template_then_the_recipes_then_alpaca(tokenizer, data_format):
    auto, bare = DataConfig(), without_chat_template(tokenizer)
    choice = resolve_template(auto, data_format, tokenizer, recipe="qwen3_8b")
    assert choice.name == "tokenizer" and choice.reason.startswith("auto: the chat_template of the tokenizer")
    for recipe, family in [("qwen3_8b", "qwen3"), ("qwen25_7b", "qwen2.5"), ("llama3_8b", "llama3"),
                           ("llama31_8b", "llama3.1"), ("llama32_1b", "llama3.1"), ("mistral_7b", "mistral-v3"),
                           ("tiny", "chatml")]:
        choice = resolve_template(auto, data_format, bare, recipe=recipe)
        assert (choice.name, choice.reason) == (family, f"auto: the tokenizer has no chat_template; recipe {recipe}'s "
                                                        "model family")
    assert resolve_template(auto, data_format, bare).name == "alpaca"


def test_a_named_template_wins_over_auto(tokenizer):
    both = DataConfig(prompt_template="alpaca", chat_format="chatml")
    assert resolve_template(both, "alpaca", tokenizer).name == "alpaca"
    assert resolve_template(both, "sharegpt", tokenizer) == resolve_template(DataConfig(chat_format="chatml"),
                                                                              "alpaca", tokenizer)
    choice = resolve_template(DataConfig(prompt_template="qwen3"), "openai", tokenizer)
    assert (choice.name, choice.reason) == ("qwen3", "data.prompt_template")


def test_every_recipe_names_a_template_of_its_family():
    import recipes

    for name in recipes.available():
        assert recipes.recipe(name).template in set(TEMPLATES) - {"tokenizer"}, name


def test_the_log_and_the_report_say_why_the_template_was_chosen(tmp_path, make_cfg, tokenizer, caplog):
    path = write_jsonl(tmp_path / "c.jsonl", [chat("Hi!", "Hello there.")])
    cfg = make_cfg(path, split="100,0,0")
    with caplog.at_level("INFO", logger="primus_bridge"):
        report = prepare_data(cfg, tokenizer).report
    assert "data: template tokenizer (auto: the chat_template of the tokenizer" in caplog.text
    assert report.template == "tokenizer" and report.template_reason.startswith("auto: the chat_template")
    assert f"template from     {report.template_reason}" in format_text(report)
    again = prepare_data(cfg, tokenizer).report
    assert again.cache_hit and again.template_reason == report.template_reason
    named = prepare_data(make_cfg(path, split="100,0,0", chat_format="chatml"), tokenizer).report
    assert (named.template, named.template_reason) == ("chatml", "data.chat_format")

