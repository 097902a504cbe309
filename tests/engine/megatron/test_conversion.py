"""HF -> Megatron -> HF through AutoBridge with the local SDPA spec: bit-exact weights, matching logits."""

import json

import pytest
import torch
from safetensors.torch import load_file
from fp32_megatron_model import fp32_megatron_model, unwrap  # this folder is on sys.path

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
