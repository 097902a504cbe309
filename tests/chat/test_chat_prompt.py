"""The tokens `chat` feeds the model equal the tokens training used for the same conversation's prompt.

Training's side is the data pipeline's own encoded sample (SampleEncoder, as the pipeline runs it) of the whole
conversation, reply included: its prompt is every id before the first trained label of the last reply. `chat`'s
side is the same record without that reply, read as an --input record."""

import json

import pytest
from transformers import AutoTokenizer

from primus_bridge.chat.inputs import prompt_request, read_requests, record_request
from primus_bridge.chat.prompt import ChatFormat
from primus_bridge.config import ConfigError
from primus_bridge.config.sections.data import DataConfig
from primus_bridge.data.encode import SampleEncoder
from primus_bridge.data.errors import DataError
from primus_bridge.data.formats import openai
from primus_bridge.data.records import RawRecord
from primus_bridge.data.templates import get_template

TOKENIZER_DIR = "examples/tokenizer"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
CHATS = {
    "single turn": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "2 + 2 = 4."}],
    "multi-turn with system": [
        {"role": "system", "content": "You are brief."}, {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Capital of Japan?"},
        {"role": "assistant", "content": "Tokyo."}],
    "whitespace and text parts": [
        {"role": "system", "content": " Padded system \n"},
        {"role": "user", "content": [{"type": "text", "text": "  spaced "}, {"type": "text", "text": "question\n"}]},
        {"role": "assistant", "content": "\n spaced answer  "}],
    "code and CJK": [{"role": "user", "content": "把这个改对：\n```python\nprint( 1)\n```"},
                     {"role": "assistant", "content": "```python\nprint(1)\n```"}],
}
TOOL_CHAT = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "a1B2c3D4e", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "content": "{\"temp\": 21}", "tool_call_id": "a1B2c3D4e", "name": "get_weather"},
    {"role": "assistant", "content": "21 °C."}]
TEMPLATES = ("llama3", "llama3.1", "qwen2.5", "qwen3", "chatml", "mistral", "alpaca", "tokenizer")
TOOL_TEMPLATES = ("llama3.1", "qwen2.5", "qwen3")  # the project tokenizer's own template renders no tools


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


def training_prompt_ids(tokenizer, template_name: str, record: dict, data: DataConfig) -> list[int]:
    """The ids before the first trained label of the record's last reply, as the data pipeline encodes it."""
    conversation = openai(RawRecord(record, "train.jsonl:1", 0))
    template = get_template(template_name, tokenizer, data)
    (sample,) = SampleEncoder(tokenizer, template, data).encode([(conversation, template.render(conversation))])
    return sample.ids[:sample.spans[-1][0] + 1]


def chat_prompt_ids(tokenizer, template_name: str, record: dict, template_date: str | None = None) -> list[int]:
    request = record_request(record, "in.jsonl:1", 0, None)
    return ChatFormat.load(template_name, tokenizer, template_date).prompt_ids(request.conversation)


CASES = [(name, chat) for name in TEMPLATES for chat in CHATS] + [(name, "tools") for name in TOOL_TEMPLATES]


@pytest.mark.parametrize(("template_name", "chat"), CASES)
def test_chat_prompt_ids_equal_training(tokenizer, template_name, chat):
    messages = TOOL_CHAT if chat == "tools" else CHATS[chat]
    tools = {"tools": [WEATHER]} if chat == "tools" else {}
    expected = training_prompt_ids(tokenizer, template_name, {"messages": messages} | tools, DataConfig())
    assert chat_prompt_ids(tokenizer, template_name, {"messages": messages[:-1]} | tools) == expected


def test_prompt_record_with_system_equals_training(tokenizer):
    messages = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hello?"},
                {"role": "assistant", "content": "Bonjour !"}]
    expected = training_prompt_ids(tokenizer, "qwen2.5", {"messages": messages}, DataConfig())
    request = prompt_request("Hello?", "Answer in French.")
    assert ChatFormat.load("qwen2.5", tokenizer).prompt_ids(request.conversation) == expected
    by_record = record_request({"prompt": "Hello?", "system": "Answer in French."}, "in.jsonl:3", 2, "ignored")
    assert ChatFormat.load("qwen2.5", tokenizer).prompt_ids(by_record.conversation) == expected


def test_recorded_template_date_is_written_as_in_training(tokenizer):
    messages = CHATS["single turn"]
    data = DataConfig(template_date="05 Mar 2025")
    expected = training_prompt_ids(tokenizer, "llama3.1", {"messages": messages}, data)
    ids = chat_prompt_ids(tokenizer, "llama3.1", {"messages": messages[:-1]}, "05 Mar 2025")
    assert ids == expected and "Today Date: 05 Mar 2025" in tokenizer.decode(ids)
    assert ids != chat_prompt_ids(tokenizer, "llama3.1", {"messages": messages[:-1]})


def test_stop_tokens_are_the_reply_closing_token_and_eos(tokenizer):
    eos = tokenizer.eos_token_id
    assert ChatFormat.load("llama3", tokenizer).stop_token_ids == (tokenizer.convert_tokens_to_ids("<|eot_id|>"), eos)
    assert ChatFormat.load("qwen2.5", tokenizer).stop_token_ids == (tokenizer.convert_tokens_to_ids("<|im_end|>"), eos)
    assert ChatFormat.load("alpaca", tokenizer).stop_token_ids == (eos,)
    with pytest.raises(ConfigError, match="template_date"):
        ChatFormat.load("llama3.1", tokenizer, "2025-03-05")


def test_bad_input_names_file_and_line(tmp_path, tokenizer):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"prompt": "ok"}) + "\n{not json\n")
    with pytest.raises(DataError, match=rf"{path}:2: "):
        list(read_requests(path, None))
    cases = {
        '{"id": 1}': "exactly one of 'prompt'",
        '{"prompt": "a", "messages": []}': "it has both",
        '{"prompt": 3}': "'prompt' must be a string",
        '{"prompt": "  "}': "empty prompt",
        '[1, 2]': "must be a JSON object",
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}':
            r"messages\[1\] is 'assistant': the last message must be the user message",
        '{"messages": [{"role": "user", "content": "Hi"}], "system": "s"}': "system prompt as messages",
        '{"messages": [{"role": "robot", "content": "Hi"}]}': "unknown role 'robot'",
    }
    for line, message in cases.items():
        path.write_text(json.dumps({"prompt": "first"}) + "\n\n" + line + "\n")
        with pytest.raises(DataError, match=message) as caught:
            list(read_requests(path, None))
        assert caught.value.where == f"{path}:3", line
    with pytest.raises(DataError, match="no such file; check --input"):
        list(read_requests(tmp_path / "missing.jsonl", None))


def test_tools_on_a_template_without_tools_are_refused(tokenizer):
    request = record_request({"messages": TOOL_CHAT[:-1], "tools": [WEATHER]}, "in.jsonl:4", 3, None)
    with pytest.raises(DataError, match="in.jsonl:4: .*template 'llama3' cannot render them"):
        ChatFormat.load("llama3", tokenizer).prompt_ids(request.conversation)


def test_system_flag_fills_only_conversations_without_one():
    own = record_request({"messages": CHATS["multi-turn with system"][:-1]}, "in.jsonl:1", 0, "Flag system.")
    assert own.conversation.system == "You are brief."
    plain = record_request({"messages": CHATS["single turn"][:-1]}, "in.jsonl:2", 1, "Flag system.")
    assert plain.conversation.system == "Flag system."
