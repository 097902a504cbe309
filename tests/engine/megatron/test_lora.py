"""The contract's HF module names map onto one Megatron-Bridge adapter per projection, as PEFT has."""

import pytest
import torch
from pydantic import ValidationError

from primus_bridge.config import ConfigError
from primus_bridge.config.sections.lora import LoraConfig
from primus_bridge.engine.megatron.lora import map_targets

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize("names, expected", [
    (["q_proj", "k_proj", "v_proj", "o_proj"], ("linear_q", "linear_k", "linear_v", "linear_proj")),
    (["v_proj", "q_proj", "k_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
     ("linear_q", "linear_k", "linear_v", "linear_proj", "linear_fc1_gate", "linear_fc1_up", "linear_fc2")),
    (["q_proj", "v_proj"], ("linear_q", "linear_v")),
    (["up_proj", "gate_proj", "down_proj"], ("linear_fc1_gate", "linear_fc1_up", "linear_fc2")),
    (["o_proj", "down_proj"], ("linear_proj", "linear_fc2")),
])
def test_mapping(names, expected):
    assert map_targets(names) == expected


def test_unknown_names_are_refused_by_the_config_before_the_engine():
    with pytest.raises(ValidationError) as err:
        LoraConfig(use_lora=True, lora_target_modules=["q_proj", "query_key_value"])
    message = str(err.value)
    assert "lora.lora_target_modules: unknown module name 'query_key_value'" in message
    assert "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj" in message


def test_peft_objects_carry_rank_alpha_dropout(megatron_cpu):
    from megatron.bridge.peft.canonical_lora import CanonicalLoRA

    from primus_bridge.engine.megatron.lora import build_peft

    peft = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_alpha=8, lora_dropout=0.0))
    assert isinstance(peft, CanonicalLoRA) and (peft.dim, peft.alpha, peft.dropout) == (4, 8, 0.0)
    assert peft.target_modules == ["linear_q", "linear_k", "linear_v", "linear_proj"]
    split = build_peft(LoraConfig(use_lora=True, lora_target_modules=["q_proj", "v_proj"]))
    assert split.target_modules == ["linear_q", "linear_v"]


def _saved_peft(peft) -> dict:
    """The `peft:` section of a checkpoint's run_config.yaml, as Megatron-Bridge writes and reads it."""
    import yaml
    from megatron.bridge.training.utils.config_utils import _ConfigContainerBase

    return yaml.safe_load(yaml.safe_dump(_ConfigContainerBase._convert_value_to_dict(peft)))


def test_peft_comes_back_from_the_run_config(megatron_cpu):
    """Checkpoint export re-creates the PEFT from the saved run config (also for part of a group)."""
    from megatron.bridge.utils.instantiate_utils import instantiate

    from primus_bridge.engine.megatron.lora import build_peft

    peft = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_target_modules=["q_proj", "v_proj", "up_proj"]))
    saved = _saved_peft(peft)
    assert saved["_target_"] == "primus_bridge.engine.megatron.projection_lora.ProjectionLoRA"
    again = instantiate(saved)
    assert type(again) is type(peft)
    assert (again.target_modules, again.dim, again.alpha, again.dropout) == (
        peft.target_modules, peft.dim, peft.alpha, peft.dropout)


def _save_folder_with(tmp_path, peft):
    """A save folder whose latest checkpoint's run config holds `peft` (what resume reads)."""
    import yaml

    save = tmp_path / "save"
    (save / "iter_0000010").mkdir(parents=True)
    (save / "latest_checkpointed_iteration.txt").write_text("10")
    (save / "iter_0000010" / "run_config.yaml").write_text(yaml.safe_dump({"peft": _saved_peft(peft)}))
    return save


def test_resumed_run_keeps_fused_adapters_of_its_checkpoint(megatron_cpu, tmp_path):
    """A run saved with one adapter per fused layer resumes with that layout; new runs get per-projection ones."""
    from megatron.bridge.peft.lora import LoRA

    from primus_bridge.engine.megatron.lora import build_peft
    from primus_bridge.engine.megatron.projection_lora import ProjectionLoRA

    lora = LoraConfig(use_lora=True, lora_rank=4, lora_target_modules=ALL_LINEAR)
    save = _save_folder_with(tmp_path, LoRA(target_modules=["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"],
                                            dim=4))
    resumed = build_peft(lora, resume=save)
    assert type(resumed) is LoRA
    assert resumed.target_modules == ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"] and resumed.dim == 4
    assert type(build_peft(lora, resume=tmp_path / "empty")) is ProjectionLoRA
    with pytest.raises(ConfigError, match=r"lora.lora_target_modules: lists part of q_proj, k_proj, v_proj, but "
                                          r"the run resumed from .*save has one adapter per fused layer"):
        build_peft(LoraConfig(use_lora=True, lora_target_modules=["q_proj", "v_proj"]), resume=save)
    per_projection = _save_folder_with(tmp_path / "new", build_peft(lora))
    assert type(build_peft(lora, resume=per_projection)) is ProjectionLoRA


def _tiny_megatron_llama(tokenizer_dir, tmp_path):
    from megatron.bridge import AutoBridge

    from primus_bridge.engine.megatron.layer_spec import use_local_spec
    from primus_bridge.models.tiny import build_tiny_llama

    hf = build_tiny_llama(tokenizer_dir, tmp_path / "tiny")
    provider = AutoBridge.from_hf_pretrained(str(hf)).to_megatron_provider(load_weights=False)
    use_local_spec(provider)
    provider.finalize()
    return hf, provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)


def test_lora_adapts_exactly_the_mapped_layers(megatron_cpu, tokenizer_dir, tmp_path):
    """Applied to a real model: adapters on the mapped layers only, base weights frozen."""
    from primus_bridge.engine.megatron.lora import build_peft

    _, model = _tiny_megatron_llama(tokenizer_dir, tmp_path)
    peft = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_target_modules=["o_proj", "down_proj"]))
    model = peft(model, training=True)
    trainable = {name for name, p in model[0].named_parameters() if p.requires_grad}
    assert trainable and all(".adapter." in name for name in trainable)
    adapted = {name.split(".adapter.")[0].rsplit(".", 1)[-1] for name in trainable}
    assert adapted == {"linear_proj", "linear_fc2"}


def _peft_adapter_shapes(hf_folder, targets: list[str], rank: int) -> dict[str, tuple]:
    """{projection name in layer order: (lora_A shape, lora_B shape)} of PEFT's LoRA on the HF model."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(hf_folder),
                           PeftLoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets))
    shapes = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            projection = name.split(".lora_")[0]
            shapes.setdefault(projection.split("model.layers.")[1], []).append(tuple(param.shape))
    return {key: tuple(value) for key, value in shapes.items()}


@pytest.mark.parametrize("targets", [ALL_LINEAR, ["q_proj", "v_proj"], ["k_proj", "gate_proj", "down_proj"]])
def test_trainable_parameters_equal_peft(megatron_cpu, tokenizer_dir, tmp_path, targets):
    """The same LoRA config trains as many parameters as PEFT's, adapter by adapter (A: r x in, B: out x r)."""
    from primus_bridge.engine.megatron.lora import build_peft

    hf, model = _tiny_megatron_llama(tokenizer_dir, tmp_path)
    model = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_target_modules=targets))(model, training=True)
    peft_shapes = _peft_adapter_shapes(hf, targets, rank=4)
    megatron_shapes = {}  # adapter -> (A shape, B shape)
    for name, param in model[0].named_parameters():
        if param.requires_grad:
            megatron_shapes.setdefault(name.rsplit(".linear_", 1)[0], []).append(tuple(param.shape))
    assert sorted(tuple(v) for v in megatron_shapes.values()) == sorted(peft_shapes.values())
    counted = sum(p.numel() for p in model[0].parameters() if p.requires_grad)
    assert counted == sum(a[0] * a[1] + b[0] * b[1] for a, b in peft_shapes.values())
    assert len(peft_shapes) == len(targets) * model[0].config.num_layers
    saved = [key for key in model[0].sharded_state_dict() if ".adapter." in key and key.endswith(".weight")]
    assert len(saved) == 2 * len(peft_shapes)  # what a checkpoint holds: every adapter, nothing for the others


def test_adapters_start_as_peft_initialises_them(megatron_cpu, tokenizer_dir, tmp_path):
    """A is drawn as PEFT draws it (kaiming-uniform, a = sqrt(5): within 1/sqrt(in), spread 1/sqrt(3 in)) and B
    is zero, so the first steps (and every clipped step after) move as PEFT's would."""
    from primus_bridge.engine.megatron.lora import build_peft

    torch.manual_seed(0)
    _, model = _tiny_megatron_llama(tokenizer_dir, tmp_path)
    model = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_target_modules=ALL_LINEAR))(model, training=True)
    adapters = {name: param for name, param in model[0].named_parameters() if param.requires_grad}
    a_weights = [p for name, p in adapters.items() if "linear_in" in name]
    assert a_weights and all(not p.detach().any() for name, p in adapters.items() if "linear_out" in name)
    for a in a_weights:
        bound = a.shape[1] ** -0.5
        assert a.detach().abs().max() <= bound
        assert abs(a.detach().float().std().item() / (bound / 3 ** 0.5) - 1) < 0.25
