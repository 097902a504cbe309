"""chatml, qwen2, qwen2.5, qwen3 and the `tokenizer` template against official chat templates
(official_templates/*.jinja, rendered by apply_chat_template on a copy of the project tokenizer with the family's
markers): the same text byte for byte, every reply span starting right after the generation prompt and ending
with the token that closes the reply (whitespace before it included), the same token ids, and a record the
template refuses reported with its file:line."""

import json

import pytest

from family import CHATS as COMMON_CHATS, WHERE, family_tokenizer, official_template
from pipeline_helpers import write_jsonl
from primus_bridge.config.sections.data import DataConfig
from primus_bridge.data import prepare_data
from primus_bridge.data.encode import SampleEncoder
from primus_bridge.data.errors import DataError
from primus_bridge.data.masking import trained_char_spans
from primus_bridge.data.records import Conversation, Step, ToolCall, Turn
from primus_bridge.data.templates import get_template, reply_closing_token_id

QWEN_PLAIN = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")
QWEN = (None, "<|im_end|>", ("<|im_start|>", "<|endoftext|>"), QWEN_PLAIN, "<|im_end|>", "<|im_start|>assistant\n")
LLAMA = ("<|begin_of_text|>", "<|eot_id|>", ("<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>"), (),
         "<|eot_id|>", "<|start_header_id|>assistant<|end_header_id|>\n\n")
MISTRAL_V3_MARKERS = ("[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                      "[TOOL_RESULTS]", "[/TOOL_RESULTS]")
FAMILIES = {  # official template -> (bos, eos, special markers, plain markers, closing token, generation prompt end)
    "chatml": ("<s>", "</s>", ("<|im_start|>", "<|im_end|>"), (), "<|im_end|>", "<|im_start|>assistant\n"),
    "qwen2": QWEN,
    "qwen2.5": QWEN,
    "qwen3": QWEN,
    "llama3": LLAMA,
    "llama3.1": LLAMA,
    "mistral-v0.3": ("<s>", "</s>", MISTRAL_V3_MARKERS, (), "</s>", ("[/INST]", "[/TOOL_RESULTS]")),
    "mistral-v0.2": ("<s>", "</s>", ("[INST]", "[/INST]"), (), "</s>", "[/INST]"),
    "mistral-v0.1": ("<s>", "</s>", ("[INST]", "[/INST]"), (), "</s>", "[/INST]"),
    "llama2-chat": ("<s>", "</s>", (), (), "</s>", "[/INST]"),
    "gemma3": ("<bos>", "<eos>", ("<start_of_turn>", "<end_of_turn>"), (), "<end_of_turn>", "<start_of_turn>model\n"),
}
OPENERS = {family: "<|im_start|>" for family in ("chatml", "qwen2", "qwen2.5", "qwen3")} | {
    "llama3": "<|start_header_id|>", "llama3.1": "<|start_header_id|>", "mistral-v0.3": "[INST]",
    "mistral-v0.2": "[INST]", "mistral-v0.1": "[INST]", "llama2-chat": "[INST]", "gemma3": "<start_of_turn>"}
NAMED = ("chatml", "qwen2", "qwen2.5", "qwen3")
TOOL_FAMILIES = ("qwen2.5", "qwen3", "llama3.1", "mistral-v0.3")
NO_SYSTEM_ROLE = ("mistral-v0.1",)

CHATS = COMMON_CHATS | {
    "same answer twice": Conversation(None, (Turn("Again?", "Yes."), Turn("Again?", "Yes.")), WHERE, 6),
}
THINKING = {
    "reasoning in every turn": Conversation(None, (
        Turn("2 + 2?", "<think>\nAdd them.\n</think>\n\n4."), Turn("Times 3?", "<think>4 x 3</think>12.")), WHERE, 7),
    "reasoning only before": Conversation("Think.", (Turn("a?", "<think>\nr\n</think>\n\nA."), Turn("b?", "B.")),
                                          WHERE, 8),
}

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city, in °C.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": 'e.g. "Paris"'}},
                   "required": ["city"]}}}
IDS = ("a1B2c3D4e", "Zz9Yy8Xx7")


def tool_turn(user: str, city: str, result: str, reply: str, call_id: str) -> Turn:
    call = ToolCall("get_weather", {"city": city}, call_id)
    return Turn(user, reply, steps=(Step("assistant", "", (call,)), Step("tool", result, tool_call_id=call_id)))


TOOL_CHATS = {
    "tools, two turns": Conversation(None, (tool_turn("Weather in Paris?", "Paris", '{"temp": 21, "sky": "晴"}',
                                                      "21 °C, clear.", IDS[0]),
                                            tool_turn("And in 東京?", "東京", "18", "18 °C in Tokyo.", IDS[1])),
                                     WHERE, 9, (WEATHER,)),
    "tools with system, plain turn first": Conversation("Use the tools.", (
        Turn("Hi", "Hello!"), tool_turn("Weather in Oslo?", "Oslo", "-3", "It is -3 °C.", IDS[0])), WHERE, 10,
        (WEATHER,)),
}
QWEN_TOOL_CHATS = {
    "two calls, two results, text beside a call": Conversation("", (Turn("Paris and Rome?", "Both mild.", steps=(
        Step("assistant", "Checking both.", (ToolCall("get_weather", {"city": "Paris"}),
                                             ToolCall("get_weather", {"city": "Rome"}))),
        Step("tool", "20"), Step("tool", "24"))),), WHERE, 11, (WEATHER,)),
    "multi-step with reasoning": Conversation(None, (Turn("Paris?", "<think>\nGot it.\n</think>\n\n20 °C.", steps=(
        Step("assistant", "<think>\nNeed the tool.\n</think>\n\n", (ToolCall("get_weather", {"city": "Paris"}),)),
        Step("tool", "20"))),), WHERE, 12, (WEATHER,)),
    "a turn that ends with a call": Conversation(None, (Turn("Hi", "Hello"), Turn(
        "Weather in Oslo?", "", tool_calls=(ToolCall("get_weather", {"city": "Oslo"}),))), WHERE, 13, (WEATHER,)),
}


def chats_for(family: str) -> dict[str, Conversation]:
    chats = dict(CHATS)
    if family in TOOL_FAMILIES:
        chats |= TOOL_CHATS
    if family.startswith("qwen") and family != "qwen2":
        chats |= QWEN_TOOL_CHATS | THINKING
    if family in NO_SYSTEM_ROLE:
        chats = {name: chat for name, chat in chats.items() if chat.system is None}
    return chats


CASES = [(family, name) for family in FAMILIES for name in chats_for(family)]


@pytest.fixture(scope="module")
def families(tokenizer):
    built = {}
    for name, (bos, eos, special, plain, _, _) in FAMILIES.items():
        template = tokenizer.chat_template if name == "chatml" else official_template(name)
        built[name] = family_tokenizer(tokenizer, template, bos, eos, special, plain)
    return built


def official(tokenizer, chat: Conversation, generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(chat.messages(), tools=list(chat.tools) or None, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def assistant_count(chat: Conversation) -> int:
    return sum(1 for message in chat.messages() if message["role"] == "assistant")


def check_spans(rendered, chat: Conversation, family: str) -> None:
    """Each span starts right after the generation prompt and ends with the closing token; there is one span
    per assistant message, in order, and no other message (its opening marker) is inside one."""
    closing, generation_tail = FAMILIES[family][4], FAMILIES[family][5]
    assert len(rendered.responses) == assistant_count(chat)
    previous_end = 0
    for start, end in rendered.responses:
        assert previous_end <= start < end
        assert rendered.text[:start].endswith(generation_tail), rendered.text[:start][-40:]
        assert rendered.text[start:end].endswith(closing), rendered.text[start:end]
        previous_end = end
        assert OPENERS[family] not in rendered.text[start:end]


def check_ids(tokenizer, template, chat: Conversation, rendered, expected: str) -> None:
    """The ids are the official text's, and every closing token is trained while the token before each span
    (the end of the generation prompt) is not."""
    (sample,) = SampleEncoder(tokenizer, template, DataConfig(seq_length=4096)).encode([(chat, rendered)])
    encoding = tokenizer(expected, add_special_tokens=False)
    assert sample.ids == encoding["input_ids"]
    trained = {position + 1 for start, stop in sample.spans for position in range(start, stop)}
    for start, end in rendered.responses:
        assert encoding.char_to_token(end - 1) in trained
        assert encoding.char_to_token(start - 1) not in trained


@pytest.mark.parametrize("family,name", [(f, n) for f, n in CASES if f in NAMED])
def test_named_template_writes_the_official_text(families, family, name):
    tokenizer, chat = families[family], chats_for(family)[name]
    expected = official(tokenizer, chat)
    template = get_template(family, tokenizer)
    rendered = template.render(chat)
    assert rendered.text == expected
    check_spans(rendered, chat, family)
    check_ids(tokenizer, template, chat, rendered, expected)
    via_tokenizer = get_template("tokenizer", tokenizer).render(chat)
    assert (via_tokenizer.responses, via_tokenizer.response_turns) == (rendered.responses, rendered.response_turns)
    assert via_tokenizer.turn_starts[1:] == rendered.turn_starts[1:]


@pytest.mark.parametrize("family,name", CASES)
def test_tokenizer_template_follows_the_official_template(families, family, name):
    tokenizer, chat = families[family], chats_for(family)[name]
    expected = official(tokenizer, chat)
    template = get_template("tokenizer", tokenizer)
    rendered = template.render(chat)
    assert rendered.text == expected
    check_spans(rendered, chat, family)
    check_ids(tokenizer, template, chat, rendered, expected)
    assert rendered.response_turns == sorted(rendered.response_turns)
    assert len(rendered.turn_starts) == len(chat.turns)


def test_default_system_prompts(families):
    plain = Conversation(None, (Turn("Hi", "Hello"),), WHERE, 0)
    assert get_template("chatml", families["chatml"]).render(plain).text.startswith("<|im_start|>user\nHi")
    assert get_template("qwen2", families["qwen2"]).render(plain).text.startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert get_template("qwen2.5", families["qwen2.5"]).render(plain).text.startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n")
    assert get_template("qwen3", families["qwen3"]).render(plain).text.startswith("<|im_start|>user\nHi")
    empty = Conversation("", (Turn("Hi", "Hello"),), WHERE, 0)
    for name in NAMED:
        assert get_template(name, families[name]).render(empty).text.startswith("<|im_start|>system\n<|im_end|>\n")


def test_qwen3_keeps_reasoning_only_after_the_last_query(families):
    rendered = get_template("qwen3", families["qwen3"]).render(THINKING["reasoning in every turn"])
    first, last = (rendered.text[a:b] for a, b in rendered.responses)
    assert first == "4.<|im_end|>"
    assert last == "<think>\n4 x 3\n</think>\n\n12.<|im_end|>"
    plain_last = get_template("qwen3", families["qwen3"]).render(CHATS["single turn"])
    assert plain_last.text[slice(*plain_last.responses[-1])] == "<think>\n\n</think>\n\n2 + 2 = 4.<|im_end|>"


def test_tool_json_is_written_as_tojson_writes_it(families):
    rendered = get_template("qwen2.5", families["qwen2.5"]).render(TOOL_CHATS["tools, two turns"])
    assert json.dumps(WEATHER, ensure_ascii=False) in rendered.text
    assert '{"name": "get_weather", "arguments": {"city": "東京"}}' in rendered.text
    assert "<|im_start|>user\n<tool_response>\n18\n</tool_response><|im_end|>\n" in rendered.text


def test_mask_history_trains_every_assistant_message_of_the_last_turn(families):
    chat = Conversation(None, (Turn("Hi", "Hello"),) + QWEN_TOOL_CHATS["two calls, two results, text beside a call"]
                        .turns, WHERE, 0, (WEATHER,))
    for name in ("qwen3", "tokenizer"):
        rendered = get_template(name, families["qwen3"]).render(chat)
        assert rendered.response_turns == [0, 1, 1]
        spans = trained_char_spans(rendered, train_on_prompt=False, mask_history=True)
        assert spans == rendered.responses[1:]
        start, end = trained_char_spans(rendered, train_on_prompt=True, mask_history=True)[0]
        assert (start, end) == (rendered.turn_starts[1], rendered.responses[-1][1])
        assert rendered.text[start:].startswith("<|im_start|>user\nParis and Rome?")


def test_whitespace_before_the_closing_token_is_trained_with_it(families):
    rendered = get_template("tokenizer", families["llama2-chat"]).render(CHATS["multi-turn with system"])
    assert [rendered.text[a:b] for a, b in rendered.responses] == [" Hello! </s>", " Tokyo. </s>"]
    rendered = get_template("tokenizer", families["mistral-v0.1"]).render(CHATS["single turn"])
    assert [rendered.text[a:b] for a, b in rendered.responses] == ["2 + 2 = 4.</s>"]


def test_system_prompt_moved_by_the_template_still_finds_every_reply(families):
    """Mistral v0.3 writes the system prompt into the last user message, so a conversation's prefix does not
    render as a prefix of the whole."""
    tokenizer = families["mistral-v0.3"]
    chat = TOOL_CHATS["tools with system, plain turn first"]
    prompt = tokenizer.apply_chat_template(chat.messages()[:2], tools=list(chat.tools), tokenize=False,
                                           add_generation_prompt=True)
    assert "Use the tools." in prompt and not official(tokenizer, chat).startswith(prompt)
    rendered = get_template("tokenizer", tokenizer).render(chat)
    assert [rendered.text[a:b] for a, b in rendered.responses][0] == " Hello!</s>"


def test_a_record_the_template_refuses_is_a_data_error_with_its_line(families):
    with pytest.raises(DataError, match="chats.jsonl:7: the tokenizer's chat_template refuses this record"):
        get_template("tokenizer", families["mistral-v0.1"]).render(CHATS["multi-turn with system"])


def test_refused_records_are_skipped_with_skip_bad_records(tmp_path, make_cfg, families):
    records = [{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
                             {"role": "assistant", "content": "a"}]},
               {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
    path = write_jsonl(tmp_path / "chats.jsonl", records)
    tokenizer = families["mistral-v0.1"]
    with pytest.raises(DataError, match="chats.jsonl:1: the tokenizer's chat_template refuses"):
        prepare_data(make_cfg(path, prompt_template="tokenizer", split="100,0,0"), tokenizer)
    report = prepare_data(make_cfg(path, prompt_template="tokenizer", split="100,0,0", skip_bad_records=True),
                          tokenizer).report
    assert report.skipped == {"template error": 1} and report.samples_kept == 1


def test_tools_are_refused_where_the_tokenizers_template_has_none(families):
    assert get_template("tokenizer", families["qwen3"]).supports_tools
    assert not get_template("tokenizer", families["gemma3"]).supports_tools


@pytest.mark.parametrize("family,template", [("qwen3", "qwen3"), ("qwen3", "tokenizer"), ("llama2-chat", "tokenizer"),
                                             ("gemma3", "tokenizer"), ("llama3.1", "tokenizer")])
def test_closing_token_is_what_generation_stops_at(families, family, template):
    tokenizer = families[family]
    closing = FAMILIES[family][4]
    assert reply_closing_token_id(get_template(template, tokenizer), tokenizer) == \
        tokenizer.convert_tokens_to_ids(closing)
