"""The hf engine on CPU: LoRA and full fine-tuning lower the loss; checkpoints, export and resume behave."""

import json

import pytest
import torch
import yaml

from primus_bridge.checkpoint import checkpoint_engine, latest_checkpoint
from primus_bridge.config import ConfigError
from primus_bridge.engine import get_engine
from primus_bridge.engine.hf.data import end_of_turn_token_id

pytestmark = pytest.mark.slow

ENGINE = get_engine("hf")


def fell(losses: list[float], fraction: float) -> bool:
    start, end = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    return end < start * (1 - fraction)


def test_lora_run_lowers_loss_checkpoints_and_exports(make_config, tiny_llama):
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    cfg = make_config(lora=True, chat=True)
    result = ENGINE.train(cfg)
    assert result.steps_done == 12 and len(result.losses) == 12 and not result.preempted
    assert fell(result.losses, 0.2), result.losses
    assert result.trainable_params < result.total_params / 2 and result.extra["eval_losses"]

    checkpoint = latest_checkpoint(cfg.checkpointing.save)
    marker = json.loads((checkpoint / "primus_bridge.json").read_text())
    assert marker["engine"] == "hf" and marker["step"] == 12 and marker["lora"] is True
    assert marker["format_version"] == 2 and marker["kind"] == "checkpoint" and marker["template"] == "chatml"
    assert checkpoint_engine(cfg.checkpointing.save) == "hf"
    assert yaml.safe_load((checkpoint / "run_config.yaml").read_text())["lora"]["lora_rank"] == 8
    assert (checkpoint / "tokenizer" / "tokenizer.json").is_file()

    export = result.export_dir
    tokenizer = AutoTokenizer.from_pretrained(export)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert GenerationConfig.from_pretrained(export).eos_token_id == im_end == end_of_turn_token_id("chatml", tokenizer)
    assert im_end != tokenizer.eos_token_id

    merged = AutoModelForCausalLM.from_pretrained(export).eval()
    assert PeftConfig.from_pretrained(export / "adapter").base_model_name_or_path == str(tiny_llama.resolve())
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), export / "adapter").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    ids = tokenizer("<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n", return_tensors="pt").input_ids
    with torch.no_grad():
        merged_logits, adapted_logits = merged(ids).logits, adapted(ids).logits
        base_logits = base(ids).logits
    torch.testing.assert_close(merged_logits, adapted_logits, atol=1e-5, rtol=0)
    assert (merged_logits - base_logits).abs().max() > 1e-3


def test_full_finetune_lowers_loss_with_recompute_and_exports_through_convert(make_config, tmp_path):
    from transformers import AutoModelForCausalLM

    from primus_bridge.convert import main as convert_main

    cfg = make_config(lora=False, lr=3e-3, min_lr=3e-4)
    cfg.activation_checkpointing.recompute_activations = True
    cfg.convert_to_hf = False
    result = ENGINE.train(cfg)
    assert result.trainable_params == result.total_params
    assert fell(result.losses, 0.2), result.losses
    assert result.export_dir is None

    out = tmp_path / "converted"
    assert convert_main(["--load", cfg.checkpointing.save, "--convert_to_hf", "--hf_save_path", str(out)]) == 0
    exported = AutoModelForCausalLM.from_pretrained(out)
    saved = AutoModelForCausalLM.from_pretrained(latest_checkpoint(cfg.checkpointing.save) / "model")
    for (name, a), (_, b) in zip(exported.state_dict().items(), saved.state_dict().items()):
        assert torch.equal(a, b), name
    exported_at = (out / "primus_bridge_export.json").read_text()
    assert convert_main(["--load", cfg.checkpointing.save, "--convert_to_hf", "--hf_save_path", str(out)]) == 0
    assert (out / "primus_bridge_export.json").read_text() == exported_at, "the same checkpoint's export is kept"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone else's")
    assert convert_main(["--load", cfg.checkpointing.save, "--convert_to_hf", "--hf_save_path", str(foreign)]) == 2

    # the planner's disk estimate for one checkpoint (model + AdamW state) is close to what was written
    from primus_bridge.planner.disk import output_sizes

    written = sum(p.stat().st_size for p in latest_checkpoint(cfg.checkpointing.save).rglob("*") if p.is_file())
    estimate, _ = output_sizes(cfg, "hf")
    assert 0.9 * written < estimate < 1.3 * written, (estimate, written)


def test_resume_continues_at_the_saved_step(make_config):
    first_cfg = make_config(train_iters=4, eval_iters=0)
    first_cfg.convert_to_hf = False
    first = ENGINE.train(first_cfg)
    second = ENGINE.train(make_config(train_iters=6, eval_iters=0))
    assert second.extra["first_step"] == 5 and second.steps_done == 6 and len(second.step_times) == 2
    assert second.losses[:4] == first.losses


def test_a_checkpoint_with_the_first_marker_format_resumes(make_config):
    """A checkpoint written before the shared marker (the hf engine's format_version 1) resumes as it did."""
    first_cfg = make_config(train_iters=4, eval_iters=0)
    first_cfg.convert_to_hf = False
    first = ENGINE.train(first_cfg)
    checkpoint = latest_checkpoint(first_cfg.checkpointing.save)
    current = json.loads((checkpoint / "primus_bridge.json").read_text())
    first_format = {"step": 4, "lora": True, "base_model": current["base_model"],
                    "eos_token_id": current["eos_token_id"], "template": "alpaca", "engine": "hf", "format_version": 1}
    (checkpoint / "primus_bridge.json").write_text(json.dumps(first_format, indent=2) + "\n")
    second_cfg = make_config(train_iters=6, eval_iters=0)
    second_cfg.convert_to_hf = False
    second = ENGINE.train(second_cfg)
    assert second.extra["first_step"] == 5 and second.steps_done == 6 and second.losses[:4] == first.losses
    resumed = json.loads((latest_checkpoint(first_cfg.checkpointing.save) / "primus_bridge.json").read_text())
    assert resumed["format_version"] == 2 and resumed["step"] == 6 and resumed["base_model"] == current["base_model"]
    assert resumed["config_changes"] == [{"step": 4, "changes": {"training.train_iters": [4, 6]}}]


def test_gradient_accumulation_equals_one_big_batch(make_config, tmp_path):
    big = ENGINE.train(make_config(run_dir=tmp_path / "big", micro_batch_size=4, train_iters=2, eval_iters=0))
    accumulated = ENGINE.train(make_config(run_dir=tmp_path / "acc", micro_batch_size=1, train_iters=2, eval_iters=0))
    assert big.losses == pytest.approx(accumulated.losses, rel=1e-5)


def test_outputs_are_checked_before_training(make_config, tmp_path):
    cfg = make_config()
    export = tmp_path / "hf_model"
    export.mkdir()
    (export / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="hf_save_path: .* not empty"):
        ENGINE.train(cfg)
    cfg = make_config(run_dir=tmp_path / "other")
    save = tmp_path / "other" / "checkpoints"
    save.mkdir(parents=True)
    (save / "notes.txt").write_text("someone else's")
    with pytest.raises(ConfigError, match="checkpointing.save: .* holds no checkpoint of ours"):
        ENGINE.train(cfg)


def test_progress_bar_on_a_terminal_and_log_lines_elsewhere(capsys, caplog):
    from primus_bridge.engine.hf.progress import Progress
    from primus_bridge.engine.hf.step import StepStats

    stats = StepStats(loss=2.5, trained_tokens=10, grad_norm=0.5, lr=1e-3)
    bar = Progress(total_steps=4, start_step=0, log_interval=2, enabled=True, use_bar=True)
    bar.step(1, stats, 1234.0)
    bar.close()
    shown = capsys.readouterr().out
    assert "1/4" in shown and "loss=2.5000" in shown and "tok_s=1,234" in shown

    plain = Progress(total_steps=4, start_step=0, log_interval=2, enabled=True, use_bar=False)
    with caplog.at_level("INFO", logger="primus_bridge"):
        plain.step(1, stats, 1234.0)
        plain.step(2, stats, 1234.0)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("step 2/4 | loss 2.5000 | lr 1.000e-03") and "eta" in lines[0]


def test_tensorboard_scalars_are_written(make_config, tmp_path):
    cfg = make_config(train_iters=2, eval_interval=1, tensorboard_dir=str(tmp_path / "tb"))
    cfg.convert_to_hf = False
    ENGINE.train(cfg)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(("change", "message"), [
    ({"precision.fp16": True, "precision.bf16": False}, "precision.fp16: the hf engine trains in bf16 or fp32"),
    ({"hf_model_name_or_path": None}, "hf_model_name_or_path: the hf engine starts from a HF model"),
])
def test_bad_settings_name_the_key_and_the_fix(make_config, change, message):
    values = make_config().model_dump()
    for dotted, value in change.items():
        section, _, key = dotted.rpartition(".")
        (values[section] if section else values)[key] = value
    with pytest.raises(ConfigError, match=message):
        ENGINE.train(type(make_config()).model_validate(values))


def test_resume_refuses_a_checkpoint_of_another_kind(make_config):
    lora = make_config(train_iters=2, eval_iters=0)
    lora.convert_to_hf = False
    ENGINE.train(lora)
    full = make_config(lora=False, train_iters=4, eval_iters=0)
    with pytest.raises(ConfigError, match=r"holds a checkpoint of another kind of run \(hf engine, LoRA\) at step 2"):
        ENGINE.train(full)


def test_profiling_writes_a_trace_and_an_operation_table_for_the_chosen_steps(make_config, tmp_path):
    import gzip
    import json

    cfg = make_config(train_iters=4)
    cfg.convert_to_hf = False
    cfg.profiling = cfg.profiling.model_copy(update={"enabled": True, "start_step": 2, "end_step": 3, "top_ops": 15})
    ENGINE.train(cfg)
    folder = tmp_path / "checkpoints" / "profile"
    trace = json.loads(gzip.decompress((folder / "rank-0.json.gz").read_bytes()))
    names = {event.get("name") for event in trace["traceEvents"]}
    assert "aten::mm" in names or "aten::addmm" in names
    table = (folder / "ops-rank0.txt").read_text()
    assert table.startswith("steps 2-3, rank 0, sorted by self_cpu_time_total")
    assert "Self CPU" in table and "aten::" in table
    assert not list(folder.glob(".*")), "no partial files left behind"
