"""The llama3, llama3.1, mistral, mistral-v3 and gemma templates against their families' official chat templates
(official_templates/*.jinja, rendered by apply_chat_template on a tokenizer that has the family's markers): the
same text byte for byte, every reply span starting where the official generation prompt ends and ending with
the token that closes the reply, and the same token ids."""

import pytest

from family import CHATS, WHERE, family_tokenizer, official_template
from primus_bridge.config.sections.data import DataConfig
from primus_bridge.data.encode import SampleEncoder
from primus_bridge.data.errors import DataError
from primus_bridge.data.records import Conversation, Step, ToolCall, Turn
from primus_bridge.data.templates import get_template
from primus_bridge.data.templates.mistral_v3 import ID_SHAPE

LLAMA = ("<|begin_of_text|>", "<|eot_id|>", ("<|start_header_id|>", "<|end_header_id|>"), "<|eot_id|>")
MISTRAL_V3_MARKERS = ("[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                      "[TOOL_RESULTS]", "[/TOOL_RESULTS]")
GEMMA = ("<bos>", "<eos>", ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>")
FAMILIES = {  # official template -> (bos_token, eos_token, marker tokens, the token that closes each reply)
    "llama3": LLAMA,
    "llama3.1": LLAMA,
    "llama3.2": LLAMA,
    "mistral-v0.2": ("<s>", "</s>", (), "</s>"),
    "mistral-v0.3": ("<s>", "</s>", MISTRAL_V3_MARKERS, "</s>"),
    "gemma2": GEMMA,
    "gemma3": GEMMA,
}
OFFICIAL = {"llama3": "llama3", "llama3.1": "llama3.1", "mistral": "mistral-v0.2", "mistral-v3": "mistral-v0.3",
            "gemma": "gemma3"}
TOOL_TEMPLATES = ("llama3.1", "mistral-v3")


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city, in °C.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": 'e.g. "Paris"'}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Local time in a city.",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def tool_turn(user: str, city: str, result: str, reply: str, call_id: str | None = None) -> Turn:
    call = ToolCall("get_weather", {"city": city}, call_id)
    return Turn(user, reply, steps=(Step("assistant", "", (call,)), Step("tool", result, tool_call_id=call_id)))


def tool_chats(call_ids: tuple[str | None, str | None]) -> dict[str, Conversation]:
    first, second = call_ids
    paris = tool_turn("What's the weather in Paris?", "Paris", '{"temp": 21, "sky": "晴"}', " 21 °C, clear. ", first)
    tokyo = tool_turn("And in 東京?", "東京", "18", "18 °C in Tokyo.", second)
    ends_with_call = Turn("Weather in Oslo?", "", tool_calls=(ToolCall("get_weather", {"city": "Oslo"}, second),))
    return {
        "tools, two turns": Conversation(None, (paris, tokyo), WHERE, 6, (WEATHER, TIME)),
        "tools with system": Conversation("Use the tools.", (paris, tokyo), WHERE, 7, (WEATHER,)),
        "tools, plain turn then a call": Conversation(None, (Turn("Hi", "Hello!"), ends_with_call), WHERE, 8,
                                                      (WEATHER,)),
        "calls without schemas": Conversation(None, (paris,), WHERE, 9),
        "same question twice": Conversation(None, (Turn("Again?", "Yes."), Turn("Again?", "Once more.")), WHERE, 10,
                                            (TIME,)),
    }


TOOL_CHATS = tool_chats((None, None)) | {f"{k}, with ids": v for k, v in
                                         tool_chats(("a1B2c3D4e", "Zz9Yy8Xx7")).items()}


@pytest.fixture(scope="module")
def families(tokenizer):
    """Official template name -> a copy of the project tokenizer carrying that template and its markers."""
    built = {}

    def family(name: str):
        if name not in built:
            bos, eos, special, _ = FAMILIES[name]
            built[name] = family_tokenizer(tokenizer, official_template(name), bos, eos, special)
        return built[name]

    return family


def official_text(family, messages: list[dict], tools: tuple[dict, ...], **options) -> str:
    return family.apply_chat_template(messages, tools=list(tools) or None, tokenize=False, **options)


def official_messages(name: str, template, conversation: Conversation) -> list[dict]:
    """conversation.messages(); for mistral-v3 with the call ids it writes and the system prompt at the start of the
    last user message (where mistral-v3 puts it, see mistral_v3.py)."""
    if name != "mistral-v3":
        return conversation.messages()
    conversation = template.with_call_ids(conversation)
    messages = conversation.messages()
    if conversation.system is None:
        return messages
    messages = messages[1:]
    last = max(i for i, message in enumerate(messages) if message["role"] == "user")
    messages[last] = messages[last] | {"content": f"{conversation.system}\n\n{messages[last]['content']}"}
    return messages


def replies_with_the_official_prompt(name: str, conversation: Conversation, messages: list[dict],
                                     replies: list[int]) -> set[int]:
    """The replies (message indices) whose official generation prompt is the text before them. mistral-v3 puts
    the system prompt and the tool schemas by the last user message of what it renders, so a prompt for an
    earlier reply has them elsewhere (the whole conversation can only be written one way); with a system prompt
    the template also drops it from a prompt that ends with a tool result."""
    if name != "mistral-v3" or not (conversation.system is not None or conversation.tools):
        return set(replies)
    last_user = max(i for i, message in enumerate(messages) if message["role"] == "user")
    in_last_turn = [index for index in replies if index > last_user]
    return set(in_last_turn[:1] if conversation.system is not None else in_last_turn)


def assert_exact(name: str, official: str, family, conversation: Conversation, **options):
    """Same text as the official template; each reply span is what the model generates after the official
    generation prompt, closing token included; ids equal tokenizing the official text."""
    template = get_template(name, family, DataConfig(template_date=options.get("date_string")))
    rendered = template.render(conversation)
    messages = official_messages(name, template, conversation)
    tools = conversation.tools
    expected = official_text(family, messages, tools, **options)
    assert rendered.text == expected

    closing = FAMILIES[official][3]
    replies = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    assert len(rendered.responses) == len(replies)
    served_as_written = replies_with_the_official_prompt(name, conversation, messages, replies)
    for index, (start, end) in zip(replies, rendered.responses):
        if index in served_as_written:
            prompt = official_text(family, messages[:index], tools, add_generation_prompt=True, **options)
            assert rendered.text.startswith(prompt) and start == len(prompt)
        else:
            assert rendered.text[:start].endswith(("[/INST]", "[/TOOL_RESULTS]"))
        assert rendered.text[start:end].endswith(closing) and end - len(closing) >= start
        assert not rendered.text[end:].startswith(closing)

    encoder = SampleEncoder(family, template, DataConfig(seq_length=4096))
    (sample,) = encoder.encode([(conversation, rendered)])
    assert sample.ids == family(expected, add_special_tokens=False)["input_ids"]
    closing_id = family.convert_tokens_to_ids(closing)
    assert [sample.ids[stop] for _, stop in sample.spans] == [closing_id] * len(replies)
    return rendered


@pytest.mark.parametrize("key", sorted(CHATS))
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_chat_equals_the_official_template(families, name, key):
    assert_exact(name, OFFICIAL[name], families(OFFICIAL[name]), CHATS[key])


@pytest.mark.parametrize("key", sorted(TOOL_CHATS))
@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_tool_calls_equal_the_official_template(families, name, key):
    assert_exact(name, OFFICIAL[name], families(OFFICIAL[name]), TOOL_CHATS[key])


@pytest.mark.parametrize("key", sorted(CHATS | TOOL_CHATS))
def test_llama31_with_the_date_of_llama32s_serving_equals_llama32(families, key):
    assert_exact("llama3.1", "llama3.2", families("llama3.2"), (CHATS | TOOL_CHATS)[key], date_string="05 Mar 2025")


def test_llama31_writes_llama31s_date_unless_configured(families, tokenizer):
    conversation = CHATS["single turn"]
    assert "Today Date: 26 Jul 2024\n\n" in get_template("llama3.1", tokenizer).render(conversation).text
    dated = get_template("llama3.1", tokenizer, DataConfig(template_date="01 Dec 2024")).render(conversation)
    assert "Today Date: 01 Dec 2024\n\n" in dated.text
    with pytest.raises(ValueError, match="write it '05 Mar 2025'"):
        DataConfig(template_date="5 Mar 2025")
    with pytest.raises(ValueError, match="like '26 Jul 2024'"):
        DataConfig(template_date="2025-03-05")


@pytest.mark.parametrize("key", sorted(CHATS))
def test_gemma_without_system_equals_gemma2_which_refuses_a_system_prompt(families, key):
    conversation = CHATS[key]
    if conversation.system is None:
        assert_exact("gemma", "gemma2", families("gemma2"), conversation)
    else:
        with pytest.raises(Exception, match="System role not supported"):
            official_text(families("gemma2"), conversation.messages(), ())


def test_reply_spans_hold_the_reply_and_its_closing_token(families):
    conversation = CHATS["whitespace around content"]
    spans = {
        "llama3": ["spaced answer<|eot_id|>", "ok<|eot_id|>"],
        "llama3.1": ["spaced answer<|eot_id|>", "ok<|eot_id|>"],
        "mistral": [" \n spaced answer  </s>", "  ok \n</s>"],
        "mistral-v3": [" spaced answer</s>", " ok</s>"],
        "gemma": ["spaced answer<end_of_turn>", "ok<end_of_turn>"],
    }
    for name, expected in spans.items():
        rendered = get_template(name, families(OFFICIAL[name])).render(conversation)
        assert [rendered.text[a:b] for a, b in rendered.responses] == expected


def test_tool_call_spans(families):
    conversation = TOOL_CHATS["tools, two turns, with ids"]
    llama = get_template("llama3.1", families("llama3.1")).render(conversation)
    assert [llama.text[a:b] for a, b in llama.responses][:2] == [
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>', "21 °C, clear.<|eot_id|>"]
    result = '"{\\"temp\\": 21, \\"sky\\": \\"晴\\"}"'  # the result text as a JSON string
    assert f"<|start_header_id|>ipython<|end_header_id|>\n\n{result}<|eot_id|>" in llama.text
    mistral = get_template("mistral-v3", families("mistral-v0.3")).render(conversation)
    assert [mistral.text[a:b] for a, b in mistral.responses][:2] == [
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1B2c3D4e"}]</s>',
        " 21 °C, clear.</s>"]
    assert ('[TOOL_RESULTS] {"content": {"temp": 21, "sky": "晴"}, "call_id": "a1B2c3D4e"}[/TOOL_RESULTS]'
            in mistral.text)


def test_mistral_v3_system_prompt_is_where_the_official_prompt_puts_it(families):
    """The official template puts the system prompt into the user message that ends the prompt (`loop.last`):
    rendering the whole conversation it leaves it out; the last turn's generation prompt has it, and that is
    the text here. Earlier turns are written without it."""
    family = families("mistral-v0.3")
    template = get_template("mistral-v3", family)
    conversation = CHATS["multi-turn with system"]
    rendered = template.render(conversation)
    messages = conversation.messages()
    last_prompt = official_text(family, messages[:-1], ())
    assert rendered.text.startswith(last_prompt) and rendered.responses[-1][0] == len(last_prompt)
    assert last_prompt.endswith("[INST] You are brief.\n\nCapital of Japan?[/INST]")
    assert official_text(family, messages, ()) == rendered.text.replace("You are brief.\n\n", "")


def test_mistral_v3_derives_ids_for_calls_without_them(families):
    template = get_template("mistral-v3", families("mistral-v0.3"))
    conversation = TOOL_CHATS["tools, two turns"]
    with_ids = template.with_call_ids(conversation)
    calls = [step.tool_calls[0] for turn in with_ids.turns for step in turn.steps if step.role == "assistant"]
    results = [step.tool_call_id for turn in with_ids.turns for step in turn.steps if step.role == "tool"]
    assert all(ID_SHAPE.fullmatch(call.id) for call in calls) and len({call.id for call in calls}) == 2
    assert results == [call.id for call in calls]
    assert template.with_call_ids(conversation) == with_ids
    assert template.render(conversation) == template.render(with_ids)


def test_mistral_v3_refuses_ids_it_cannot_write(families):
    template = get_template("mistral-v3", families("mistral-v0.3"))
    bad_call = Conversation(None, (tool_turn("Weather?", "Oslo", "5", "5 °C.", "call_abc123"),), WHERE, 0,
                            (WEATHER,))
    with pytest.raises(DataError, match=f"^{WHERE}: tool call id 'call_abc123': .* 9 letters or digits"):
        template.render(bad_call)
    unanswered = Conversation(None, (Turn("Weather?", "5 °C.", steps=(Step("tool", "5"),)),), WHERE, 0)
    with pytest.raises(DataError, match=f"^{WHERE}: a tool result has no tool_call_id"):
        template.render(unanswered)


def test_mistral_v3_refuses_a_turn_that_ends_with_a_call_before_another_turn(families):
    family = families("mistral-v0.3")
    template = get_template("mistral-v3", family)
    call = ToolCall("get_weather", {"city": "Oslo"}, "a1B2c3D4e")
    conversation = Conversation(None, (Turn("Oslo?", "", tool_calls=(call,)), Turn("Hi", "Hello")), WHERE, 0)
    with pytest.raises(DataError, match=f"^{WHERE}: turn 1 ends with a tool call"):
        template.render(conversation)
    with pytest.raises(Exception, match="roles must alternate"):
        official_text(family, conversation.messages(), ())


def test_llama31_refuses_several_calls_in_one_message(families):
    family = families("llama3.1")
    calls = (ToolCall("get_weather", {"city": "Oslo"}), ToolCall("get_time", {"city": "Oslo"}))
    conversation = Conversation(None, (Turn("Oslo?", "Cold.", steps=(Step("assistant", "", calls),
                                                                     Step("tool", "5"), Step("tool", "10:00"))),),
                                WHERE, 0, (WEATHER, TIME))
    with pytest.raises(DataError, match=f"^{WHERE}: an assistant message makes 2 tool calls"):
        get_template("llama3.1", family).render(conversation)
    with pytest.raises(Exception, match="only supports single tool-calls"):
        official_text(family, conversation.messages(), conversation.tools)


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_text_beside_a_tool_call_is_refused_not_dropped(families, name):
    family = families(OFFICIAL[name])
    call = ToolCall("get_weather", {"city": "Oslo"}, "a1B2c3D4e")
    turn = Turn("Oslo?", "Cold.", steps=(Step("assistant", "Let me check.", (call,)),
                                         Step("tool", "5", tool_call_id="a1B2c3D4e")))
    conversation = Conversation(None, (turn,), WHERE, 0, (WEATHER,))
    assert "Let me check." not in official_text(family, official_messages(name, get_template(name, family),
                                                                          conversation), conversation.tools)
    with pytest.raises(DataError, match=f"^{WHERE}: an assistant message has both text"):
        get_template(name, family).render(conversation)


def test_only_the_tool_calling_templates_say_they_support_tools(families):
    supports = {name: get_template(name, families(official)).supports_tools for name, official in OFFICIAL.items()}
    assert supports == {"llama3": False, "llama3.1": True, "mistral": False, "mistral-v3": True, "gemma": False}
