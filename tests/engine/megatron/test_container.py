"""The config translation builds a real Megatron-Bridge ConfigContainer that validates and serializes."""

from pathlib import Path

import pytest
import torch

from primus_bridge.config import ConfigError, PrimusConfig


def _config(tmp_path: Path, hf_folder: Path, **overrides) -> PrimusConfig:
    values = {
        "engine": "megatron", "convert_from_hf": True, "hf_model_name_or_path": str(hf_folder),
        "training": {"micro_batch_size": 2, "global_batch_size": 8, "train_iters": 30, "lr": 2e-5,
                     "min_lr": 2e-6, "lr_warmup_iters": 3, "weight_decay": 0.01, "clip_grad": 0.5,
                     "eval_interval": 10, "eval_iters": 2, "log_interval": 5,
                     "tensorboard_dir": str(tmp_path / "tb")},
        "data": {"data_path": "examples/data/alpaca_sample.jsonl", "seq_length": 128, "split": "90,10,0"},
        "checkpointing": {"save": str(tmp_path / "ckpt"), "save_interval": 10},
        "activation_checkpointing": {"recompute_activations": True},
    }
    for section, fields in overrides.items():
        values.setdefault(section, {}).update(fields) if isinstance(fields, dict) else values.update({section: fields})
    return PrimusConfig.model_validate(values)


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory, tokenizer_dir):
    from primus_bridge.models.tiny import build_tiny_llama

    return build_tiny_llama(tokenizer_dir, tmp_path_factory.mktemp("hf") / "tiny")


def _container(cfg, tiny_hf):
    from primus_bridge.engine.megatron.container import StartingPoint, build_config_container
    from primus_bridge.engine.megatron.model import provider_from_hf

    provider = provider_from_hf(tiny_hf, "local")
    base = Path(cfg.checkpointing.save).parent / "base"
    base.mkdir(exist_ok=True)
    start = StartingPoint(base, Path(cfg.checkpointing.save), str(tiny_hf))
    return build_config_container(cfg, provider, start)


def test_sft_container_carries_every_setting(megatron_cpu, tmp_path, tiny_hf):
    from megatron.bridge.training.config import ConfigContainer

    from primus_bridge.engine.megatron.attention import SDPACoreAttention
    from primus_bridge.engine.megatron.dataset import PackedRowsProvider

    container = _container(_config(tmp_path, tiny_hf), tiny_hf)
    assert isinstance(container, ConfigContainer)
    train, opt, sched, ckpt = container.train, container.optimizer, container.scheduler, container.checkpoint
    assert (train.train_iters, train.micro_batch_size, train.global_batch_size) == (30, 1, 4)
    assert (opt.optimizer, opt.lr, opt.min_lr, opt.weight_decay, opt.clip_grad) == ("adam", 2e-5, 2e-6, 0.01, 0.5)
    assert opt.use_distributed_optimizer and container.ddp.use_distributed_optimizer
    # one objective on both engines: the mean over the step's trained tokens (test_objective.py)
    assert container.model.calculate_per_token_loss and not container.ddp.average_in_collective
    assert (sched.lr_warmup_iters, sched.lr_decay_style, sched.lr_decay_iters) == (3, "cosine", 30)
    assert (container.validation.eval_interval, container.validation.eval_iters) == (10, 2)
    assert (ckpt.save, ckpt.load, ckpt.pretrained_checkpoint) == \
        (str(tmp_path / "ckpt"),) * 2 + (str(tmp_path / "base"),)
    assert (ckpt.save_interval, ckpt.async_save) == (10, False)
    assert (container.logger.log_interval, container.logger.tensorboard_dir) == (5, str(tmp_path / "tb"))
    assert container.tokenizer.tokenizer_model == str(tiny_hf)
    assert container.mixed_precision.bf16 and container.peft is None
    model = container.model
    assert (model.seq_length, model.recompute_granularity, model.recompute_method) == (256, "full", "uniform")
    spec = model.transformer_layer_spec(model)
    assert spec.layer_specs[0].submodules.self_attention.submodules.core_attention is SDPACoreAttention
    assert isinstance(container.dataset, PackedRowsProvider) and container.dataset.rows_per_stream == 2


def test_parallelism_precision_and_lora(megatron_cpu, tmp_path, tiny_hf):
    from megatron.bridge.peft.canonical_lora import CanonicalLoRA

    cfg = _config(tmp_path, tiny_hf, parallelism={"tensor_model_parallel_size": 2, "sequence_parallel": True,
                                                  "pipeline_model_parallel_size": 2,
                                                  "virtual_pipeline_model_parallel_size": 1,
                                                  "use_distributed_optimizer": False},
                  precision={"bf16": False, "fp16": True},
                  lora={"use_lora": True, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.1,
                        "lora_target_modules": ["q_proj", "k_proj", "v_proj", "down_proj"]},
                  checkpointing={"save_lora_only": True})
    container = _container(cfg, tiny_hf)
    model = container.model
    assert (model.tensor_model_parallel_size, model.pipeline_model_parallel_size) == (2, 2)
    assert model.virtual_pipeline_model_parallel_size == 1 and model.sequence_parallel
    assert container.mixed_precision.fp16 and not container.optimizer.use_distributed_optimizer
    assert isinstance(container.peft, CanonicalLoRA)
    assert (container.peft.target_modules, container.peft.dim, container.peft.alpha, container.peft.dropout) == (
        ["linear_q", "linear_k", "linear_v", "linear_fc2"], 8, 16, 0.1)


def test_container_validates_and_serializes(megatron_cpu, tmp_path, tiny_hf, monkeypatch):
    """What finetune() does first: validate(); and what every checkpoint save does: to_yaml()."""
    import yaml

    container = _container(_config(tmp_path, tiny_hf), tiny_hf)
    monkeypatch.setenv("WORLD_SIZE", "1")
    container.validate()
    out = tmp_path / "run_config.yaml"
    container.to_yaml(str(out))
    saved = yaml.safe_load(out.read_text())
    assert saved["dataset"]["rows_per_stream"] == 2
    assert saved["model"]["transformer_layer_spec"]["_target_"].endswith("layer_spec.local_sdpa_layer_spec")


def test_fp8_without_transformer_engine_is_a_config_error(megatron_cpu, tmp_path, tiny_hf):
    from primus_bridge.engine.megatron.container import mixed_precision_section

    with pytest.raises(ConfigError, match="precision.fp8: 'hybrid' needs TransformerEngine"):
        mixed_precision_section(_config(tmp_path, tiny_hf, precision={"fp8": "hybrid"}))


def test_fp32_when_no_half_precision(megatron_cpu, tmp_path, tiny_hf):
    from primus_bridge.engine.megatron.container import mixed_precision_section

    recipe = mixed_precision_section(_config(tmp_path, tiny_hf, precision={"bf16": False}))
    assert recipe.fp32 and not recipe.bf16 and recipe.params_dtype == torch.float32


def test_a_graphed_run_records_its_steps_on_static_streams_and_validates(megatron_cpu, tmp_path, tiny_hf, monkeypatch):
    """model.cuda_graph: full_iteration: Megatron's full-iteration graph after one eager step, the in-pass NaN / Inf
    checks off (Megatron-Bridge refuses the loss check with this graph), static streams, a fresh wrapper state."""
    from primus_bridge.engine.megatron.cuda_graph import WARMUP_STEPS, fresh_graph_state

    container = _container(_config(tmp_path, tiny_hf, model={"cuda_graph": "full_iteration"}), tiny_hf)
    model = container.model
    assert (model.cuda_graph_impl, model.cuda_graph_warmup_steps) == ("full_iteration", WARMUP_STEPS)
    assert fresh_graph_state in model._pre_wrap_hooks
    assert not container.rerun_state_machine.check_for_nan_in_loss and not container.ddp.check_for_nan_in_grad
    assert container.dataset.static_shapes
    monkeypatch.setenv("WORLD_SIZE", "1")
    container.validate()
    model.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)  # Megatron-Bridge builds it
    eager = _container(_config(tmp_path, tiny_hf), tiny_hf)
    assert eager.model.cuda_graph_impl == "none" and not eager.dataset.static_shapes
    assert fresh_graph_state not in eager.model._pre_wrap_hooks
