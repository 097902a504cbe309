"""The one-rank LoRA adapter path computes what Megatron-Bridge's adapter computes, outputs and gradients."""

import pytest
import torch
import torch.nn.functional as F
from tiny_lora_model import ALL_LINEAR, loss_and_grads, packed_stream, tiny_lora_model  # this folder is on sys.path

from primus_bridge.engine.megatron.compat.lora_fast_path import ENTRY
from primus_bridge.engine.megatron.compat.marker import installed_by, library_original


@pytest.fixture(scope="module")
def transformer_config(megatron_cpu):
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(num_layers=1, hidden_size=64, num_attention_heads=4, use_cpu_initialization=True)


def _adapter(config, dropout: float, position: str, input_is_parallel: bool):
    from megatron.bridge.peft.utils import ParallelLinearAdapter

    torch.manual_seed(0)
    adapter = ParallelLinearAdapter(64, 96, 8, "decoder.layers.0.self_attention.linear_qkv", activation="identity",
                                    model_parallel_config=config, alpha=32, dropout=dropout,
                                    dropout_position=position, input_is_parallel=input_is_parallel,
                                    row_init_method="normal")
    return adapter.float().train()


def _run(adapter, forward, x):
    torch.manual_seed(1)
    x = x.clone().requires_grad_(True)
    out = forward(adapter, x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [x.grad, adapter.linear_in.weight.grad, adapter.linear_out.weight.grad]
    adapter.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("dropout,position", [(0.0, "pre"), (0.1, "pre"), (0.1, "post")])
@pytest.mark.parametrize("input_is_parallel", [False, True])
def test_fast_path_equals_megatron_bridge(transformer_config, dropout, position, input_is_parallel):
    from megatron.bridge.peft.utils import ParallelLinearAdapter

    from primus_bridge.engine.megatron.compat.lora_fast_path import adapter_forward, is_simple

    adapter = _adapter(transformer_config, dropout, position, input_is_parallel)
    assert is_simple(adapter)
    library = library_original(ParallelLinearAdapter.forward)
    x = torch.randn(16, 2, 64)
    expected, expected_grads = _run(adapter, lambda a, t: library(a, t), x)
    got, got_grads = _run(adapter, adapter_forward, x)
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    for g, e in zip(got_grads, expected_grads):
        assert e is not None and e.abs().max() > 0
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)


def test_other_configurations_keep_megatron_bridge_path(transformer_config):
    from primus_bridge.engine.megatron.compat.lora_fast_path import is_simple

    adapter = _adapter(transformer_config, 0.0, "pre", False)
    adapter.use_a2a = True
    assert not is_simple(adapter)
    fused = _adapter(transformer_config, 0.0, "pre", False)
    fused.config.gradient_accumulation_fusion = True
    try:
        assert not is_simple(fused)
    finally:
        fused.config.gradient_accumulation_fusion = False


def test_installed_once_and_used_by_a_lora_model(megatron_cpu, tokenizer_dir, tmp_path):
    """A whole LoRA model: the same loss and adapter gradients with the fast path as without it."""
    from megatron.bridge.peft.canonical_lora import LoRALinearSplitFC1UpGate, LoRALinearSplitQKV
    from megatron.bridge.peft.lora_layers import LoRALinear
    from megatron.bridge.peft.utils import ParallelLinearAdapter

    from primus_bridge.engine.megatron.compat.lora_fast_path import use_lora_fast_path

    use_lora_fast_path()
    classes = (ParallelLinearAdapter, LoRALinearSplitQKV, LoRALinearSplitFC1UpGate, LoRALinear)
    installed = [cls.forward for cls in classes]
    use_lora_fast_path()
    assert [cls.forward for cls in classes] == installed and all(installed_by(f) == ENTRY for f in installed)

    # Dropout 0: the library's adapters draw their masks one by one, the grouped path all at once.
    model = tiny_lora_model(tokenizer_dir, tmp_path / "tiny", lora_dropout=0.0)[0]
    stream = packed_stream()
    in_place = _count_in_place_updates(model, stream)
    assert in_place == 2 * model.config.num_layers, in_place  # linear_qkv and linear_fc1: the column-parallel ones
    fast_loss, fast_grads, _ = loss_and_grads(model, stream)
    for cls, forward in zip(classes, installed):
        cls.forward = library_original(forward)
    try:
        library_loss, library_grads, _ = loss_and_grads(model, stream)
    finally:
        for cls, forward in zip(classes, installed):
            cls.forward = forward
    torch.testing.assert_close(fast_loss, library_loss, rtol=1e-6, atol=1e-6)
    assert len(fast_grads) == len(ALL_LINEAR) * 2 * model.config.num_layers
    for name, grad in library_grads.items():
        assert grad.abs().max() > 0, name
        # fp32 sums in another order (x @ [A_q; A_k; A_v]^T, one B for the group): agreement to ~1e-6 of the scale
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-5, atol=1e-5 * grad.abs().max().item())


def _count_in_place_updates(model, stream) -> int:
    """How many adapter updates of one forward-backward were added in place (AddLowRank)."""
    from primus_bridge.engine.megatron.compat import lora_fast_path

    calls = []
    original = lora_fast_path.AddLowRank.apply
    lora_fast_path.AddLowRank.apply = lambda *args: calls.append(1) or original(*args)
    try:
        loss_and_grads(model, stream)
    finally:
        lora_fast_path.AddLowRank.apply = original
    return len(calls)


def test_the_in_place_update_equals_the_sum_with_its_gradients():
    """AddLowRank writes base + low_rank @ b^T * scale into base; gradients by autograd's numerical check."""
    from primus_bridge.engine.megatron.compat.lora_fast_path import AddLowRank, add_low_rank

    torch.manual_seed(0)
    base_input = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    low_rank = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 5, dtype=torch.float64)

    def update(x, low, b_):
        return AddLowRank.apply(F.linear(x, weight), low, b_, 0.5)

    expected = F.linear(base_input, weight) + F.linear(low_rank, b) * 0.5
    torch.testing.assert_close(update(base_input, low_rank, b), expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(update, (base_input, low_rank, b))
    base = F.linear(base_input, weight)
    assert add_low_rank(base, low_rank, b, 0.5) is base, "written into the base output"
    view = F.linear(base_input, weight)[:, :1]
    summed = add_low_rank(view, low_rank[:, :1], b, 0.5)
    assert summed is not view and summed.shape == view.shape, "a view is left alone"
    torch.testing.assert_close(summed, expected[:, :1], rtol=1e-12, atol=1e-12)
    summed.sum().backward()
    assert b.grad is not None and low_rank.grad is not None


HIDDEN, HEADS, GROUPS, HEAD_DIM, FFN = 32, 4, 2, 8, 48
ALL_SPLIT = ["linear_q", "linear_k", "linear_v", "linear_fc1_gate", "linear_fc1_up"]


@pytest.fixture(scope="module")
def gqa_config(megatron_cpu):
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(num_layers=1, hidden_size=HIDDEN, num_attention_heads=HEADS, num_query_groups=GROUPS,
                             ffn_hidden_size=FFN, use_cpu_initialization=True)


def _fused_layers(config, targets: list[str], dropout: float) -> torch.nn.Module:
    """One layer's linear_qkv and linear_fc1 with per-projection adapters (rank 4, alpha 8); every weight random."""
    from megatron.core.tensor_parallel import ColumnParallelLinear

    from primus_bridge.engine.megatron.projection_lora import ProjectionLoRA

    torch.manual_seed(0)
    layers = torch.nn.Module()
    for name, out in (("linear_qkv", (HEADS + 2 * GROUPS) * HEAD_DIM), ("linear_fc1", 2 * FFN)):
        setattr(layers, name, ColumnParallelLinear(HIDDEN, out, config=config, init_method=torch.nn.init.normal_,
                                                   bias=False, gather_output=False))
    ProjectionLoRA(target_modules=targets, dim=4, alpha=8, dropout=dropout)(layers, training=True)
    for name, param in layers.named_parameters():
        if ".adapter." in name:
            torch.nn.init.normal_(param, std=0.3)
    return layers.float()


def _separate_adapters(wrapper, x: torch.Tensor) -> torch.Tensor:
    """Reference: each projection's adapter alone (Megatron-Bridge's adapter forward), placed by Megatron-Bridge's
    own q/k/v interleave or gate/up concatenation; zeros for projections without an adapter."""
    from megatron.bridge.peft.utils import ParallelLinearAdapter

    library = library_original(ParallelLinearAdapter.forward)
    base = wrapper.to_wrap(x)[0]
    sizes = {"adapter_q": HEADS * HEAD_DIM, "adapter_k": GROUPS * HEAD_DIM, "adapter_v": GROUPS * HEAD_DIM,
             "adapter_gate": FFN, "adapter_up": FFN}
    parts = {key: library(wrapper.adapter[key], x) if key in wrapper.adapter else x.new_zeros(*x.shape[:-1], size)
             for key, size in sizes.items()}
    if base.shape[-1] == 2 * FFN:
        return base + torch.cat([parts["adapter_gate"], parts["adapter_up"]], dim=-1)
    return base + wrapper._interleave_qkv(parts["adapter_q"], parts["adapter_k"], parts["adapter_v"])


def _assert_fp32_close(got: torch.Tensor, expected: torch.Tensor, name: str = "") -> None:
    """Equal up to float32 rounding: sums over the same terms in another order (a few ulp of the largest entry)."""
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6 * expected.abs().max().item(), msg=name)


def _output_and_grads(wrapper, forward, x: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = forward(wrapper, x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {"x": x.grad, **{n: p.grad for n, p in wrapper.named_parameters() if p.requires_grad}}
    wrapper.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("targets", [ALL_SPLIT, ["linear_q", "linear_v", "linear_fc1_up"],
                                     ["linear_k", "linear_fc1_gate"]])
def test_grouped_adapters_equal_separate_adapters(gqa_config, targets):
    """One matmul pair per fused layer gives every projection's adapter output and gradients, also for part
    of a group (grouped GQA layout: 2 query heads per KV group)."""
    from primus_bridge.engine.megatron.compat.lora_fast_path import group_forward, groupable, present_adapters

    layers = _fused_layers(gqa_config, targets, dropout=0.0)
    x = torch.randn(16, 2, HIDDEN)
    for wrapper in (layers.linear_qkv, layers.linear_fc1):
        assert groupable([adapter for _, adapter in present_adapters(wrapper)])
        got, got_grads = _output_and_grads(wrapper, lambda w, t: w(t)[0], x)
        expected, expected_grads = _output_and_grads(wrapper, _separate_adapters, x)
        assert installed_by(type(wrapper).forward) == ENTRY and type(wrapper).forward.__doc__ == group_forward.__doc__
        assert (expected - wrapper.to_wrap(x)[0]).abs().max() > 0.1  # the adapters change the output
        _assert_fp32_close(got, expected)
        assert got_grads.keys() == expected_grads.keys() and len(got_grads) > 2
        for name, grad in expected_grads.items():
            assert grad.abs().max() > 0, name
            _assert_fp32_close(got_grads[name], grad, name)


def test_placed_path_equals_grouped_path(gqa_config):
    """The path for tensor parallelism and the like (each adapter's own forward, placed) agrees on one rank."""
    from primus_bridge.engine.megatron.compat.lora_fast_path import placed_forward, placement, present_adapters

    layers = _fused_layers(gqa_config, ["linear_q", "linear_v", "linear_fc1_gate", "linear_fc1_up"], dropout=0.0)
    x = torch.randn(16, 2, HIDDEN)
    for wrapper in (layers.linear_qkv, layers.linear_fc1):
        present = present_adapters(wrapper)
        size = wrapper.to_wrap(x)[0].shape[-1]
        where = placement(wrapper, tuple(key for key, _ in present), size, x.device)
        placed = wrapper.to_wrap(x)[0] + placed_forward(wrapper, present, where, x, size)
        _assert_fp32_close(wrapper(x)[0], placed)


def test_each_adapter_gets_its_own_dropout_mask():
    """DroppedLowRank on x = 1 with A = I shows the masks: independent per adapter, rate p, kept values 1/(1-p)."""
    from primus_bridge.engine.megatron.compat.lora_fast_path import DroppedLowRank

    p, n, width = 0.25, 3, 64
    torch.manual_seed(0)
    out = DroppedLowRank.apply(torch.ones(512, width), torch.eye(width).expand(n, width, width), p)
    masks = out.view(512, n, width)
    assert masks.unique().tolist() == [0.0, torch.tensor(1 / (1 - p)).item()]
    dropped = (masks == 0).float().mean(dim=(0, 2))
    assert torch.allclose(dropped, torch.full((n,), p), atol=0.01), dropped
    same = (masks[:, 0] == masks[:, 1]).float().mean()  # independent masks agree on p^2 + (1-p)^2 of positions
    assert abs(same - (p * p + (1 - p) ** 2)) < 0.01, same


def test_dropped_low_rank_gradients():
    from primus_bridge.engine.megatron.compat.lora_fast_path import DroppedLowRank

    def seeded(x, a):
        torch.manual_seed(7)  # the same masks on every call
        return DroppedLowRank.apply(x, a, 0.3)

    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    a = torch.randn(3, 2, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(seeded, (x, a))


def test_dropout_only_in_training(gqa_config):
    """With dropout the grouped path drops in train mode only; in eval mode it equals the separate adapters."""
    layers = _fused_layers(gqa_config, ALL_SPLIT, dropout=0.2)
    x = torch.randn(16, 2, HIDDEN)
    for wrapper in (layers.linear_qkv, layers.linear_fc1):
        torch.manual_seed(3)
        first = wrapper(x)[0]
        torch.manual_seed(3)
        assert torch.equal(wrapper(x)[0], first)
        wrapper.eval()
        exact = wrapper(x)[0]
        _assert_fp32_close(exact, _separate_adapters(wrapper, x))
        assert (first - exact).abs().max() > 0.1
        wrapper.train()
