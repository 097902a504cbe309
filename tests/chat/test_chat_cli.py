"""`primus-bridge chat` end to end on CPU: a tiny Llama trained two LoRA steps with the hf engine on chat data
(template llama3.1 with a template_date), exported, then chatted with from the merged export, the PEFT adapter
and the checkpoint; batch JSONL; interactive history; what it says when it cannot do what was asked."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from primus_bridge.chat.backends import Sampling, TransformersBackend
from primus_bridge.chat.cli import ChatSession, chat_loop, main as chat_main
from primus_bridge.chat.model_source import ModelSource
from primus_bridge.chat.prompt import ChatFormat
from primus_bridge.cli.main import main as cli_main
from primus_bridge.config import PrimusConfig
from primus_bridge.config.sections.data import DataConfig
from primus_bridge.data.encode import SampleEncoder
from primus_bridge.data.formats import openai
from primus_bridge.data.records import RawRecord
from primus_bridge.data.templates import get_template
from primus_bridge.engine import get_engine
from primus_bridge.models.tiny import TinyLlamaSpec, build_tiny_llama

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TEMPLATE, TEMPLATE_DATE = "llama3.1", "05 Mar 2025"
NEW_TOKENS = 6
QUESTIONS = ("How many minutes are in 3 hours?", "What about 5 hours?")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Two LoRA steps of the hf engine on the shipped sharegpt sample; the checkpoint and the HF export."""
    root = tmp_path_factory.mktemp("chat-run")
    base = build_tiny_llama(REPO / "examples/tokenizer", root / "base", TinyLlamaSpec())
    cfg = PrimusConfig.model_validate({
        "engine": "hf", "hf_model_name_or_path": str(base),
        "training": {"micro_batch_size": 2, "global_batch_size": 2, "train_iters": 2, "lr": 1e-2,
                     "lr_warmup_iters": 0, "eval_interval": 100, "log_interval": 1},
        "data": {"data_path": str(REPO / "examples/data/sharegpt_sample.jsonl"), "dataset_format": "sharegpt",
                 "chat_format": TEMPLATE, "template_date": TEMPLATE_DATE, "split": "100,0,0", "seq_length": 128,
                 "cache_dir": str(root / "cache")},
        "lora": {"use_lora": True, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0},
        "checkpointing": {"save": str(root / "checkpoints"), "save_interval": 2},
        "convert_to_hf": True, "hf_save_path": str(root / "hf_model"),
    })
    result = get_engine("hf").train(cfg)
    assert result.steps_done == 2
    return {"base": base, "checkpoints": root / "checkpoints", "export": root / "hf_model"}


def chat(*args: str, capsys=None) -> tuple[int, str, str]:
    code = chat_main([*args, "--max_new_tokens", str(NEW_TOKENS)])
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def answers(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def training_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """What the data pipeline trained on before the last reply of `messages` (which ends with that reply)."""
    data = DataConfig(template_date=TEMPLATE_DATE)
    conversation = openai(RawRecord({"messages": messages}, "train.jsonl:1", 0))
    template = get_template(TEMPLATE, tokenizer, data)
    (sample,) = SampleEncoder(tokenizer, template, data).encode([(conversation, template.render(conversation))])
    return sample.ids[:sample.spans[-1][0] + 1]


def greedy(model, tokenizer, ids: list[int]) -> str:
    stops = [tokenizer.convert_tokens_to_ids("<|eot_id|>"), tokenizer.eos_token_id]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=stops,
                             pad_token_id=tokenizer.pad_token_id)
    generated = out[0, len(ids):].tolist()
    return tokenizer.decode(generated[:-1] if generated[-1] in stops else generated)


def test_export_records_the_training_template(trained):
    marker = json.loads((trained["export"] / "primus_bridge_export.json").read_text())
    assert marker["template"] == TEMPLATE and marker["template_date"] == TEMPLATE_DATE


def test_batch_from_the_export_feeds_the_training_prompt(trained, tmp_path, capsys):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": QUESTIONS[0]},
                {"role": "assistant", "content": "180."}, {"role": "user", "content": QUESTIONS[1]}]
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "prompt": QUESTIONS[0]}) + "\n"
                      + json.dumps({"id": "b", "messages": messages}) + "\n")
    code, _, err = chat("--model", str(trained["export"]), "--input", str(source), "--output",
                        str(tmp_path / "out.jsonl"), capsys=capsys)
    assert code == 0, err
    assert f"template {TEMPLATE} (recorded in" in err
    first, second = answers(tmp_path / "out.jsonl")
    assert (first["id"], second["id"], second["messages"]) == ("a", "b", messages)

    tokenizer = AutoTokenizer.from_pretrained(trained["export"])
    model = AutoModelForCausalLM.from_pretrained(trained["export"]).eval()
    for answer, conversation in ((first, [{"role": "user", "content": QUESTIONS[0]}]), (second, messages)):
        ids = training_prompt_ids(tokenizer, [*conversation, {"role": "assistant", "content": "x"}])
        assert answer["prompt_tokens"] == len(ids)
        assert answer["response"] == greedy(model, tokenizer, ids)
        assert answer["finish_reason"] in ("stop", "length") and 0 < answer["completion_tokens"] <= NEW_TOKENS


def test_adapter_checkpoint_and_merged_export_answer_alike(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    results = {}
    for name, model in (("merged", trained["export"]), ("adapter", trained["export"] / "adapter"),
                        ("checkpoint", trained["checkpoints"])):
        code, out, err = chat("--model", str(model), "--prompt", QUESTIONS[0], "--prompt", QUESTIONS[1],
                              capsys=capsys)
        assert code == 0, err
        results[name] = [json.loads(line) for line in out.splitlines()]
        assert [r["prompt"] for r in results[name]] == list(QUESTIONS)
    assert results["merged"] == results["adapter"] == results["checkpoint"]
    code, out, _ = chat("--model", str(trained["base"]), "--template", TEMPLATE, "--template_date", TEMPLATE_DATE,
                        "--prompt", QUESTIONS[0], "--prompt", QUESTIONS[1], capsys=capsys)
    untrained = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["response"] for r in untrained] != [r["response"] for r in results["merged"]], \
        "the trained weights answer differently from the base model"
    assert not list((tmp_path / "tmp").iterdir()), "the checkpoint's temporary export is removed"


def test_adapter_takes_base_model_from_the_flag(trained, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    shutil.copytree(trained["export"] / "adapter", adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "/gone/base"}))
    code, _, err = chat("--model", str(adapter), "--prompt", "Hi", capsys=capsys)
    assert code == 2 and "/gone/base does not exist here; pass --base_model" in err
    code, out, err = chat("--model", str(adapter), "--base_model", str(trained["base"]), "--template", TEMPLATE,
                          "--template_date", TEMPLATE_DATE, "--prompt", QUESTIONS[0], capsys=capsys)
    assert code == 0, err
    code, merged, _ = chat("--model", str(trained["export"]), "--prompt", QUESTIONS[0], capsys=capsys)
    assert json.loads(out)["response"] == json.loads(merged)["response"]


def test_interactive_chat_keeps_history(trained, capsys):
    source = ModelSource(str(trained["export"]), None, str(trained["export"]), None)
    tokenizer = AutoTokenizer.from_pretrained(trained["export"])
    session = ChatSession(ChatFormat.load(TEMPLATE, tokenizer, TEMPLATE_DATE),
                          TransformersBackend(source, tokenizer, "cpu", "auto"), Sampling(max_new_tokens=NEW_TOKENS))
    shown = []
    chat_loop(session, None, [QUESTIONS[0], QUESTIONS[1], "/reset", QUESTIONS[0], "/exit", "never read"],
              shown.append)
    first, second, cleared, again = shown[0], shown[1], shown[2], shown[3]
    assert cleared == "(conversation cleared)" and len(shown) == 4
    strip = str.removesuffix
    assert strip(again, "\n(cut at --max_new_tokens)") == strip(first, "\n(cut at --max_new_tokens)")
    history = [{"role": "user", "content": QUESTIONS[0]},
               {"role": "assistant", "content": strip(first, "\n(cut at --max_new_tokens)")},
               {"role": "user", "content": QUESTIONS[1]}]
    code, out, _ = chat("--model", str(trained["export"]), "--input", str(_jsonl(trained, history)), capsys=capsys)
    assert code == 0 and json.loads(out)["response"] == strip(second, "\n(cut at --max_new_tokens)")


def _jsonl(trained, messages: list[dict]) -> Path:
    path = trained["export"].parent / "history.jsonl"
    path.write_text(json.dumps({"messages": messages}) + "\n")
    return path


def test_template_override_and_missing_template(trained, tmp_path, capsys):
    code, _, err = chat("--model", str(trained["export"]), "--template", "chatml", "--prompt", "Hi", capsys=capsys)
    assert code == 0 and f"warning: --template chatml differs from the template the model was trained with " \
                          f"({TEMPLATE}" in err
    code, _, err = chat("--model", str(trained["base"]), "--prompt", "Hi", capsys=capsys)
    assert code == 0 and "records no training template; using the tokenizer's own chat_template" in err
    bare = tmp_path / "bare"
    shutil.copytree(trained["base"], bare)
    (bare / "chat_template.jinja").unlink()
    code, _, err = chat("--model", str(bare), "--prompt", "Hi", capsys=capsys)
    assert code == 2 and "no training template recorded" in err and "pass --template NAME" in err


def test_errors_name_the_fix(trained, tmp_path, capsys):
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"prompt": "Hi"}\n{"prompt": \n')
    code, out, err = chat("--model", str(trained["export"]), "--input", str(bad), capsys=capsys)
    assert code == 2 and f"{bad}:2: " in err and not out
    code, _, err = chat("--model", str(tmp_path / "nowhere"), "--prompt", "Hi", capsys=capsys)
    assert code == 2 and "no such folder" in err
    code, _, err = chat("--model", str(tmp_path), "--prompt", "Hi", capsys=capsys)
    assert code == 2 and "not an HF model (no config.json)" in err
    code, _, err = chat("--model", str(trained["export"]), "--prompt", "Hi", "--top_p", "0", "--do_sample",
                        "--temperature", "0", capsys=capsys)
    assert code == 2 and "--top_p: must be in (0, 1]" in err and "--do_sample with --temperature 0" in err
    code, _, err = chat("--model", str(trained["export"]), capsys=capsys)  # pytest's stdin is no terminal
    assert code == 2 and "stdin is not a terminal" in err


def test_vllm_backend_says_when_it_is_missing(trained, capsys):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    code, _, err = chat("--model", str(trained["export"]), "--backend", "vllm", "--prompt", "Hi", capsys=capsys)
    assert code == 2 and "vLLM is not installed" in err and "--backend transformers" in err


def test_chat_is_a_verb(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli_main(["chat", "--help"])
    assert stopped.value.code == 0 and "--model" in capsys.readouterr().out
