"""HF -> Megatron -> HF through AutoBridge with the local SDPA spec: bit-exact weights, matching logits."""

import json

import pytest
import torch
from safetensors.torch import load_file
from fp32_megatron_model import fp32_megatron_model, unwrap  # this folder is on sys.path

pytestmark = pytest.mark.slow

ARCHS = ("llama", "qwen2")


def _hf_config(arch: str, tokenizer):
    from transformers import LlamaConfig, Qwen2Config

    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory, tokenizer_dir):
    """{arch: folder} of tiny random HF models saved with the project tokenizer (float32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    folders = {}
    for index, arch in enumerate(ARCHS):
        torch.manual_seed(index)
        model = AutoModelForCausalLM.from_config(_hf_config(arch, tokenizer), dtype=torch.float32)
        folders[arch] = tmp_path_factory.mktemp(arch)
        model.save_pretrained(folders[arch])
        tokenizer.save_pretrained(folders[arch])
    return folders


def _weights(folder) -> dict[str, torch.Tensor]:
    weights = {}
    for path in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(path))
    return weights


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_is_bit_exact(megatron_cpu, hf_models, arch, tmp_path):
    bridge, models = fp32_megatron_model(hf_models[arch])
    bridge.save_hf_pretrained(models, tmp_path, show_progress=False)
    before, after = _weights(hf_models[arch]), _weights(tmp_path)
    assert sorted(before) == sorted(after)
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == json.loads(
        (hf_models[arch] / "config.json").read_text())["architectures"]


@pytest.mark.parametrize("arch", ARCHS)
def test_megatron_logits_equal_hf_logits(megatron_cpu, hf_models, arch):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(hf_models[arch], dtype=torch.float32).eval()
    _, models = fp32_megatron_model(hf_models[arch])
    megatron = unwrap(models[0]).eval()
    tokens = torch.randint(0, hf.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(3))
    positions = torch.arange(40).expand(2, -1)
    with torch.no_grad():
        expected = hf(tokens).logits
        got = megatron(input_ids=tokens, position_ids=positions, attention_mask=None)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_packed_logits_equal_each_document_alone(megatron_cpu, hf_models, arch):
    """A packed stream (THD, cu_seqlens) gives every document the logits HF gives it on its own."""
    from megatron.core.packed_seq_params import PackedSeqParams
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(hf_models[arch], dtype=torch.float32).eval()
    _, models = fp32_megatron_model(hf_models[arch])
    megatron = unwrap(models[0]).eval()
    lengths = [7, 19, 3, 11]
    documents = [torch.randint(0, hf.config.vocab_size, (n,), generator=torch.Generator().manual_seed(n))
                 for n in lengths]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                             max_seqlen_q=max(lengths), max_seqlen_kv=max(lengths))
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        got = megatron(input_ids=torch.cat(documents)[None], position_ids=positions, attention_mask=None,
                       packed_seq_params=params)[0]
        expected = torch.cat([hf(doc[None]).logits[0] for doc in documents])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _with_random_adapters(models: list, peft) -> list:
    models = peft(models, training=False)
    torch.manual_seed(1)
    for name, param in models[0].named_parameters():
        if ".adapter." in name:
            torch.nn.init.normal_(param, std=0.05)  # B too: every adapter changes the output
    return models


def _exported_lora_logits(megatron_cpu_models: list, peft, hf_folder, out, tokens) -> dict[str, torch.Tensor]:
    """{megatron, peft, peft_off, merged}: logits of the Megatron LoRA model, of PEFT's model loaded from the
    exported adapter (adapters on and off), of the exported merged HF model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from primus_bridge.engine.megatron.export import ADAPTER_SUBDIR, export_models

    positions = torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1)
    with torch.no_grad():
        logits = {"megatron": unwrap(megatron_cpu_models[0]).eval()(input_ids=tokens, position_ids=positions,
                                                                      attention_mask=None)}
    tokenizer = AutoTokenizer.from_pretrained(str(hf_folder), local_files_only=True)
    export_models(megatron_cpu_models, hf_folder, out, None, tokenizer, peft)
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(hf_folder, dtype=torch.float32),
                                             out / ADAPTER_SUBDIR).eval()
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        logits["peft"] = with_adapter(tokens).logits
        with with_adapter.disable_adapter():
            logits["peft_off"] = with_adapter(tokens).logits
        logits["merged"] = merged(tokens).logits
    return logits


def _peft_state_names(hf_folder, targets: list[str]) -> dict[str, tuple]:
    """{name: shape} of the adapter weights PEFT itself saves for this LoRA config."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(hf_folder), LoraConfig(r=4, target_modules=targets))
    return {name: tuple(t.shape) for name, t in get_peft_model_state_dict(model).items()}


@pytest.mark.parametrize("arch, targets", [("llama", ALL_LINEAR), ("llama", ["q_proj", "v_proj"]),
                                           ("qwen2", ["k_proj", "up_proj", "down_proj"])])
def test_lora_export_equals_the_megatron_model(megatron_cpu, hf_models, arch, targets, tmp_path):
    """Per-projection adapters export under PEFT's names and shapes; PeftModel.from_pretrained and the merged
    HF model give the Megatron LoRA model's logits (also for part of a fused group)."""
    from safetensors.torch import load_file

    from primus_bridge.config.sections.lora import LoraConfig
    from primus_bridge.engine.megatron.lora import build_peft

    peft = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_alpha=8, lora_dropout=0.1,
                                 lora_target_modules=targets))
    models = _with_random_adapters(fp32_megatron_model(hf_models[arch])[1], peft)
    tokens = torch.randint(0, 1000, (2, 24), generator=torch.Generator().manual_seed(3))
    logits = _exported_lora_logits(models, peft, hf_models[arch], tmp_path / "out", tokens)
    adapter = tmp_path / "out" / "adapter"
    saved = {name: tuple(t.shape) for name, t in load_file(adapter / "adapter_model.safetensors").items()}
    assert saved == _peft_state_names(hf_models[arch], targets)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (4, 8, False)
    assert sorted(config["target_modules"]) == sorted(targets)
    assert (logits["peft_off"] - logits["megatron"]).abs().max() > 0.05  # the adapters matter
    torch.testing.assert_close(logits["peft"], logits["megatron"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits["merged"], logits["megatron"], atol=1e-5, rtol=0)


def test_fused_adapters_of_earlier_runs_still_export(megatron_cpu, hf_models, tmp_path):
    """A checkpoint of an earlier run (one adapter per fused layer, Megatron-Bridge's LoRA, re-created from its
    saved run config as checkpoint export does) exports to PEFT and merged HF weights with the same logits."""
    import yaml
    from megatron.bridge.peft.lora import LoRA
    from megatron.bridge.training.utils.config_utils import _ConfigContainerBase
    from megatron.bridge.utils.instantiate_utils import instantiate

    written = LoRA(target_modules=["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"], dim=4, alpha=8)
    peft = instantiate(yaml.safe_load(yaml.safe_dump(_ConfigContainerBase._convert_value_to_dict(written))))
    assert type(peft) is LoRA
    models = _with_random_adapters(fp32_megatron_model(hf_models["llama"])[1], peft)
    tokens = torch.randint(0, 1000, (2, 24), generator=torch.Generator().manual_seed(3))
    logits = _exported_lora_logits(models, peft, hf_models["llama"], tmp_path / "out", tokens)
    assert (logits["peft_off"] - logits["megatron"]).abs().max() > 0.05
    torch.testing.assert_close(logits["peft"], logits["megatron"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits["merged"], logits["megatron"], atol=1e-5, rtol=0)
