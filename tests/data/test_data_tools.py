"""Tool-calling records: LLaMA-Factory's sharegpt convention (glaive_toolcall), Hermes-style sharegpt, and the
OpenAI layout load whole, and every malformed tool field is a DataError naming file:line and the field.

The fixtures under tool_data/ are written in the exact layouts of the public datasets: glaive_toolcall_sample.json
as LLaMA-Factory's data/glaive_toolcall_en_demo.json (a JSON array, `tools` a JSON string, function_call values
JSON strings of {"name", "arguments"}); hermes_sharegpt.jsonl as NousResearch/hermes-function-calling-v1 (system /
human / gpt / tool, the calls as <tool_call> text, extra id / category / subcategory / task columns);
openai_tools.jsonl as OpenAI chat fine-tuning data with `tools`, `tool_calls` and role `tool` messages.
"""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from primus_bridge.config.sections.data import DataConfig
from primus_bridge.data import DataError, prepare_data
from primus_bridge.data.formats import NORMALIZERS, detect_format, unused_columns
from primus_bridge.data.readers import read_records
from primus_bridge.data.records import RawRecord, Step, ToolCall
from primus_bridge.data.resolve import resolve_format
from primus_bridge.data.templates import TEMPLATES

from pipeline_helpers import write_jsonl

TOOL_DATA = Path(__file__).parent / "tool_data"
FIXTURES = {"glaive_toolcall_sample.json": ("sharegpt", 5), "hermes_sharegpt.jsonl": ("sharegpt", 1),
            "openai_tools.jsonl": ("openai", 4)}
TOOL_TEMPLATES = [name for name in ("qwen2.5", "qwen3") if getattr(TEMPLATES.get(name), "supports_tools", False)]
"""ChatML-family templates that render tool calls (the project tokenizer has their markers)."""


def load(name: str) -> list:
    """Every record of a fixture, normalized as its format (auto-detected record by record)."""
    conversations = []
    for raw in read_records([TOOL_DATA / name]):
        assert raw.problem is None, raw.problem
        conversations.append(NORMALIZERS[detect_format(raw)](raw))
    return conversations


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_fixture_record_loads_and_auto_detects(name):
    fmt, count = FIXTURES[name]
    assert resolve_format(DataConfig(data_path=str(TOOL_DATA / name)), [TOOL_DATA / name]) == fmt
    assert len(load(name)) == count


def test_glaive_function_call_and_observation_become_steps():
    plain, currency, declined, bmi, chinese = load("glaive_toolcall_sample.json")
    assert plain.tools == () and not plain.uses_tools()
    assert [t["function"]["name"] for t in currency.tools] == ["convert_currency", "get_weather"]
    assert currency.tools[0] == {"type": "function", "function": {
        "name": "convert_currency", "description": "Convert an amount from one currency to another",
        "parameters": currency.tools[0]["function"]["parameters"]}}
    first = currency.turns[0]
    assert first.user == "How much is 250 US dollars in euros?"
    assert first.steps == (
        Step("assistant", "", (ToolCall("convert_currency", {"amount": 250, "from_currency": "USD",
                                                             "to_currency": "EUR"}),)),
        Step("tool", '{"converted_amount": 231.25, "from_currency": "USD", "to_currency": "EUR"}',
             name="convert_currency"),
    )
    assert first.assistant == "250 US dollars is about 231.25 euros." and first.tool_calls == ()
    assert len(currency.turns) == 2 and currency.turns[1].steps[0].tool_calls[0].arguments["amount"] == 1000
    assert declined.uses_tools() and all(not turn.steps for turn in declined.turns)
    assert bmi.turns[0].steps == () and bmi.turns[1].steps[1].name == "calculate_bmi"
    assert chinese.turns[0].steps[0].tool_calls == (ToolCall("set_timer", {"minutes": 10}),)


def test_glaive_messages_are_the_transformers_layout():
    currency = load("glaive_toolcall_sample.json")[1]
    assert currency.messages()[:4] == [
        {"role": "user", "content": "How much is 250 US dollars in euros?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "convert_currency", "arguments": {"amount": 250, "from_currency": "USD", "to_currency": "EUR"}}}]},
        {"role": "tool", "content": '{"converted_amount": 231.25, "from_currency": "USD", "to_currency": "EUR"}',
         "name": "convert_currency"},
        {"role": "assistant", "content": "250 US dollars is about 231.25 euros."},
    ]


def test_hermes_tool_role_follows_the_gpt_message_that_calls_in_text():
    (conv,) = load("hermes_sharegpt.jsonl")
    assert conv.system.startswith("You are a function calling AI model.") and conv.tools == ()
    (turn,) = conv.turns
    call, result = turn.steps
    assert call.role == "assistant" and call.content.startswith("<tool_call>\n") and call.tool_calls == ()
    assert result.role == "tool" and result.content.startswith("<tool_response>") and result.name is None
    assert turn.assistant.startswith("Yes, there is light rain") and conv.uses_tools()
    (raw,) = read_records([TOOL_DATA / "hermes_sharegpt.jsonl"])
    assert unused_columns("sharegpt", raw.value) == ["id", "category", "subcategory", "task"]


def test_openai_records_keep_ids_parse_arguments_and_join_text_parts():
    lisbon, parallel, ends_with_call, plain = load("openai_tools.jsonl")
    (raw, *_) = read_records([TOOL_DATA / "openai_tools.jsonl"])
    expected = raw.value["messages"][1:]
    expected[1] = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lisbon"}}, "id": "call_7f3a"}]}
    assert lisbon.system == "You are a travel assistant."
    assert lisbon.messages()[1:] == expected
    assert lisbon.tools == tuple(raw.value["tools"])
    steps = parallel.turns[0].steps
    assert [c.id for c in steps[0].tool_calls] == ["call_a1", "call_b2"]
    assert [c.arguments for c in steps[0].tool_calls] == [{"city": "Oslo"}, {"city": "Madrid"}]
    assert steps[0].content == "Let me check both cities."
    assert [(s.role, s.tool_call_id, s.name) for s in steps[1:]] == [("tool", "call_a1", None),
                                                                    ("tool", "call_b2", None)]
    assert parallel.turns[0].assistant == "Oslo: 4 degrees and snow. Madrid: 18 degrees and cloudy."
    final = ends_with_call.turns[0]
    assert final.user == "Convert 40 GBP to USD." and final.assistant == "" and final.steps == ()
    assert final.tool_calls[0].name == "convert_currency" and final.tool_calls[0].id == "call_c3"
    assert ends_with_call.tools[0]["type"] == "function"
    assert ends_with_call.tools[0]["function"]["name"] == "convert_currency"
    assert not plain.uses_tools()


def test_parallel_function_call_list_in_sharegpt():
    record = {"conversations": [
        {"from": "human", "value": "Weather in Rome and Paris?"},
        {"from": "function_call", "value": json.dumps([{"name": "get_weather", "arguments": {"city": "Rome"}},
                                                       {"name": "get_weather", "arguments": '{"city": "Paris"}'}])},
        {"from": "observation", "value": "[{\"c\": 20}, {\"c\": 15}]"},
        {"from": "gpt", "value": "Rome 20, Paris 15."}]}
    (turn,) = NORMALIZERS["sharegpt"](RawRecord(record, "f:1", 0)).turns
    assert [c.arguments for c in turn.steps[0].tool_calls] == [{"city": "Rome"}, {"city": "Paris"}]
    assert turn.steps[1].name is None, "several calls: the observation is not named after one of them"


def _sharegpt(*messages: tuple[str, object], **extra) -> dict:
    return {"conversations": [{"from": who, "value": value} for who, value in messages]} | extra


def _openai(*messages: dict, **extra) -> dict:
    return {"messages": list(messages)} | extra


CALL = json.dumps({"name": "f", "arguments": {"x": 1}})
USER, ASK = {"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
TOOL_BAD_CASES = {
    "function_call invalid JSON": (_sharegpt(("human", "q"), ("function_call", '{"name": "f", '), ("gpt", "a")),
                                   "conversations[1].value (function_call): invalid JSON"),
    "function_call without name": (_sharegpt(("human", "q"), ("function_call", '{"arguments": {}}'),
                                             ("observation", "r"), ("gpt", "a")),
                                   "conversations[1].value (function_call) has no 'name'"),
    "function_call without arguments": (_sharegpt(("human", "q"), ("function_call", '{"name": "f"}'),
                                                  ("observation", "r"), ("gpt", "a")),
                                        "conversations[1].value has no 'arguments'"),
    "arguments not an object": (_sharegpt(("human", "q"), ("function_call", '{"name": "f", "arguments": [1]}'),
                                          ("observation", "r"), ("gpt", "a")),
                                "conversations[1].value.arguments must be a JSON object"),
    "observation without a call": (_sharegpt(("human", "q"), ("observation", "r"), ("gpt", "a")),
                                   "conversations[1] is a tool result (observation) with no tool call before it"),
    "ends on an observation": (_sharegpt(("human", "q"), ("function_call", CALL), ("observation", "r")),
                               "conversation ends with a tool result (conversations[2])"),
    "function_call then gpt": (_sharegpt(("human", "q"), ("function_call", CALL), ("gpt", "a")),
                               "conversations[2] is 'assistant', expected 'tool' (the result of its call)"),
    "observation then human": (_sharegpt(("human", "q"), ("function_call", CALL), ("observation", "r"),
                                         ("human", "q2"), ("gpt", "a")),
                               "conversations[3] is 'user', expected 'assistant'"),
    "tools invalid JSON": (_sharegpt(("human", "q"), ("gpt", "a"), tools="[{"), "field 'tools': invalid JSON"),
    "tools not a list": (_sharegpt(("human", "q"), ("gpt", "a"), tools='{"name": "f"}'),
                         "field 'tools' must be a list of function schemas"),
    "tool schema without name": (_sharegpt(("human", "q"), ("gpt", "a"), tools=[{"description": "d"}]),
                                 "tools[0] has no 'name'"),
    "non-function tool type": (_openai(USER, {"role": "assistant", "content": "a"},
                                       tools=[{"type": "retrieval"}]),
                               "tools[0].type is 'retrieval'; only function tools"),
    "openai arguments invalid JSON": (_openai(USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{bad"}}]}),
        "messages[1].tool_calls[0].function.arguments: invalid JSON"),
    "openai call without function": (_openai(USER, {"role": "assistant", "tool_calls": [{"id": "c1"}]}),
                                     "messages[1].tool_calls[0].function must be an object"),
    "unknown tool_call_id": (_openai(USER, ASK, {"role": "tool", "tool_call_id": "zz", "content": "r"},
                                     {"role": "assistant", "content": "a"}),
                             "messages[2].tool_call_id 'zz' answers no tool call made before it"),
    "tool_calls on a user message": (_openai({"role": "user", "content": "q", "tool_calls": ASK["tool_calls"]},
                                             {"role": "assistant", "content": "a"}),
                                     "messages[0] is a 'user' message with tool_calls"),
    "null content without calls": (_openai(USER, {"role": "assistant", "content": None}),
                                   "missing messages[1].content"),
    "image content part": (_openai({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                                   {"role": "assistant", "content": "a"}),
                           "messages[0].content[0] is not a text part (type 'image_url')"),
    "empty final reply": (_openai(USER, ASK, {"role": "tool", "tool_call_id": "c1", "content": "r"},
                                  {"role": "assistant", "content": " "}), "empty output: messages[3]"),
    "tool message first": (_openai({"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}),
                           "messages[0] is a tool result (observation) with no tool call before it"),
}


@pytest.mark.parametrize("case", sorted(TOOL_BAD_CASES))
def test_bad_tool_record_names_file_line_and_field(tmp_path, make_cfg, tokenizer, case):
    bad, message = TOOL_BAD_CASES[case]
    fmt = "sharegpt" if "conversations" in bad else "openai"
    good = _sharegpt(("human", "q"), ("gpt", "a")) if fmt == "sharegpt" else _openai(
        USER, {"role": "assistant", "content": "a"})
    path = write_jsonl(tmp_path / "tools.jsonl", [good, good, bad])
    with pytest.raises(DataError) as err:
        prepare_data(make_cfg(path, dataset_format=fmt, prompt_template="chatml"), tokenizer)
    assert str(err.value).startswith(f"{path}:3: ") and message in str(err.value), str(err.value)


def test_template_without_tools_refuses_tool_records(make_cfg, tokenizer):
    path = TOOL_DATA / "glaive_toolcall_sample.json"
    assert not getattr(TEMPLATES["alpaca"], "supports_tools", False)
    with pytest.raises(DataError) as err:
        prepare_data(make_cfg(path, prompt_template="alpaca"), tokenizer)
    able = [name for name, cls in TEMPLATES.items() if getattr(cls, "supports_tools", False)]
    assert str(err.value).startswith(f"{path}:23 (record 1): the record has tools or tool calls, and template "
                                     "'alpaca' cannot render them")
    assert all(name in str(err.value) for name in able)
    report = prepare_data(make_cfg(path, prompt_template="alpaca", skip_bad_records=True, split="100,0,0"),
                          tokenizer).report
    assert (report.records_read, report.samples_kept, report.skipped) == (5, 1, {"tools unsupported": 4})


@pytest.mark.skipif(not TOOL_TEMPLATES, reason="no Qwen template renders tool calls")
@pytest.mark.parametrize("template", TOOL_TEMPLATES or ["qwen2.5"])
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_tool_fixtures_train_with_a_tool_template(make_cfg, tokenizer, template, name):
    report = prepare_data(make_cfg(TOOL_DATA / name, prompt_template=template, seq_length=1024, split="100,0,0"),
                          tokenizer).report
    assert report.skipped == {} and report.dropped == {}
    assert report.records_read == report.samples_kept == FIXTURES[name][1]
    unused = {"hermes_sharegpt.jsonl": ["id", "category", "subcategory", "task"]}.get(name, [])
    assert [c["column"] for c in report.unused_columns] == unused


SETTINGS = settings(max_examples=80, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture])
KEYS = st.sampled_from(["name", "arguments", "id", "type", "function", "parameters", "text", "x"])
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
                           lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(KEYS, kids, max_size=4)),
                           max_leaves=15)


@SETTINGS
@given(tools=json_values, calls=json_values, call_value=st.one_of(json_values, json_values.map(json.dumps)))
def test_any_tool_field_gives_a_conversation_or_a_data_error(tools, calls, call_value):
    records = [
        ("sharegpt", _sharegpt(("human", "q"), ("function_call", call_value), ("observation", "r"), ("gpt", "a"),
                               tools=tools)),
        ("openai", _openai(USER, {"role": "assistant", "content": None, "tool_calls": calls},
                           {"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}, tools=tools)),
    ]
    for fmt, record in records:
        try:
            NORMALIZERS[fmt](RawRecord(record, "f.jsonl:1", 0))
        except DataError as err:
            assert err.where == "f.jsonl:1" and err.problem
