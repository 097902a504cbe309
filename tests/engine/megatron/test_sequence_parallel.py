"""Sequence parallel on the local layer spec, without Apex or TE: the engine's torch norm, its place in the
spec, and a TP=2 sequence-parallel forward and backward on the CPU (2 processes, gloo) equal to the TP=1 model's.

gloo in the pinned torch has the collectives sequence parallel uses (`all_gather_into_tensor`,
`reduce_scatter_tensor`), so the whole path runs here: the embedding's scatter of the sequence, the linear
layers' gathers and reduce-scatters, the norms on sequence shards and the TP sum of their gradients.
"""

from pathlib import Path

import pytest
import torch

from sequence_parallel_worker import NORM_WEIGHTS  # this folder is on sys.path
from test_convert_parallel_cpu import torchrun_worker

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("sequence_parallel_worker.py")
TP = 2
ROWS, SEQ, VOCAB = 2, 40, 96


def _config(normalization: str = "RMSNorm", **settings):
    from megatron.core.transformer.transformer_config import TransformerConfig

    settings = {"num_layers": 1, "hidden_size": 32, "num_attention_heads": 4, "layernorm_epsilon": 1e-6,
                "use_cpu_initialization": True, **settings}
    return TransformerConfig(normalization=normalization, **settings)


@pytest.mark.parametrize("normalization", ["RMSNorm", "LayerNorm"])
def test_norm_is_megatron_cores_torch_norm(normalization):
    """With sequence parallel off it is what WrappedTorchNorm builds: same module, eps and output."""
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    from primus_bridge.engine.megatron.layer_spec import SequenceParallelTorchNorm

    config = _config(normalization)
    ours, megatron = (norm_class(config=config, hidden_size=32, eps=1e-6)
                      for norm_class in (SequenceParallelTorchNorm, WrappedTorchNorm))
    assert type(ours) is type(megatron) and ours.eps == megatron.eps == 1e-6
    assert ours.state_dict().keys() == megatron.state_dict().keys()
    with torch.no_grad():
        for param in ours.parameters():
            param.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
    megatron.load_state_dict(ours.state_dict())
    hidden = torch.randn(5, 2, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ours(hidden), megatron(hidden))


@pytest.mark.parametrize("sequence_parallel", [False, True])
def test_norm_weights_are_marked_for_the_tp_gradient_sum(sequence_parallel):
    from primus_bridge.engine.megatron.layer_spec import SequenceParallelTorchNorm

    config = _config("LayerNorm", tensor_model_parallel_size=2, sequence_parallel=sequence_parallel)
    norm = SequenceParallelTorchNorm(config=config, hidden_size=32, eps=1e-6)
    assert [param.sequence_parallel for param in norm.parameters()] == [sequence_parallel] * 2


def test_norm_refuses_what_torch_norms_cannot():
    from primus_bridge.engine.megatron.layer_spec import SequenceParallelTorchNorm

    with pytest.raises(ValueError, match=r"torch norms do not support: zero-centred norm weights "
                                         r"\(layernorm_zero_centered_gamma\); use model.transformer_impl: "
                                         "transformer_engine"):
        SequenceParallelTorchNorm(config=_config(layernorm_zero_centered_gamma=True), hidden_size=32)


def test_local_spec_uses_the_norm_everywhere(megatron_cpu):
    """Input, pre-MLP and query/key norms of every layer, and the block's final norm."""
    from primus_bridge.engine.megatron.attention import SDPACoreAttention
    from primus_bridge.engine.megatron.layer_spec import SequenceParallelTorchNorm, local_sdpa_layer_spec

    block = local_sdpa_layer_spec(_config(num_layers=3, qk_layernorm=True))
    assert len(block.layer_specs) == 3 and block.layer_norm is SequenceParallelTorchNorm
    layer = block.layer_specs[0].submodules
    attention = layer.self_attention.submodules
    assert attention.core_attention is SDPACoreAttention
    assert {layer.input_layernorm, layer.pre_mlp_layernorm, attention.q_layernorm, attention.k_layernorm} == {
        SequenceParallelTorchNorm}


@pytest.fixture(scope="module")
def hf_qwen3(tmp_path_factory) -> Path:
    """A tiny Qwen3 (query/key norms besides the layer norms), float32."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                         tie_word_embeddings=False)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf_qwen3")
    Qwen3ForCausalLM(config).to(torch.float32).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.pt"
    torch.save(torch.randint(0, VOCAB, (ROWS, SEQ), generator=torch.Generator().manual_seed(3)), path)
    return path


@pytest.fixture(scope="module")
def tp2_ranks(hf_qwen3, tokens, tmp_path_factory) -> list[dict]:
    """What each rank of the TP=2 sequence-parallel run reports (sequence_parallel_worker.py)."""
    out = tmp_path_factory.mktemp("tp2")
    torchrun_worker(WORKER, TP, ["--hf", str(hf_qwen3), "--tokens", str(tokens), "--out", str(out), "--tp", str(TP)],
                    f"TP={TP} sequence-parallel run")
    return [torch.load(out / f"rank{rank}.pt") for rank in range(TP)]


@pytest.fixture(scope="module")
def tp1(megatron_cpu, hf_qwen3, tokens) -> dict:
    from sequence_parallel_worker import run

    return run(hf_qwen3, torch.load(tokens), tp=1)


def test_each_rank_ran_on_its_sequence_shard(tp2_ranks, tp1):
    assert tp1["norm_input_shape"] == [SEQ, ROWS, 64]
    for rank in tp2_ranks:
        assert rank["norm_input_shape"] == [SEQ // TP, ROWS, 64]
        assert set(rank["norm_marks"].values()) == {True}


@pytest.mark.parametrize("batch", ["rows", "packed"])
def test_tp2_sequence_parallel_logits_equal_tp1(tp2_ranks, tp1, batch):
    for rank in tp2_ranks:
        torch.testing.assert_close(rank[batch]["logits"], tp1[batch]["logits"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", ["rows", "packed"])
def test_tp2_sequence_parallel_norm_grads_equal_tp1(tp2_ranks, tp1, batch):
    """Summed over the TP group, each rank holds the TP=1 gradient of every norm weight."""
    expected = tp1[batch]["norm_grads"]
    names = sorted(expected)
    assert len(names) == 2 * 4 + 1 and all(name.endswith(NORM_WEIGHTS) for name in names)
    for rank in tp2_ranks:
        assert sorted(rank[batch]["norm_grads"]) == names
        for name in names:
            torch.testing.assert_close(rank[batch]["norm_grads"][name], expected[name], atol=1e-5, rtol=0, msg=name)
