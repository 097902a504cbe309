"""Recomputing the SwiGLU output: the same loss and gradients, and the output is no longer kept."""

import weakref

import pytest
import torch
from tiny_lora_model import loss_and_grads, packed_stream, tiny_lora_model  # this folder is on sys.path

pytestmark = pytest.mark.slow


def _fc2_inputs_alive_after_forward(gpt, stream) -> list[bool]:
    """After the forward (before the backward): is each layer's FC2 input (the SwiGLU output) still alive?"""
    refs, hooks = [], []

    def remember(_, args):
        x = args[0]
        refs.append(weakref.ref(x._base if x._base is not None else x))  # a kept view keeps its base alive

    for layer in gpt.decoder.layers:
        hooks.append(layer.mlp.linear_fc2.register_forward_pre_hook(remember))
    try:
        loss = gpt(**stream)
        alive = [ref() is not None for ref in refs]
        loss.sum().backward()
        gpt.zero_grad(set_to_none=True)
    finally:
        for hook in hooks:
            hook.remove()
    return alive


@pytest.mark.parametrize("lora_dropout", [None, 0.0, 0.1], ids=["full-sft", "lora", "lora-dropout"])
def test_same_loss_and_gradients_and_the_output_is_freed(megatron_cpu, tokenizer_dir, tmp_path, lora_dropout):
    from primus_bridge.engine.megatron.compat.swiglu_recompute import use_swiglu_recompute

    model = tiny_lora_model(tokenizer_dir, tmp_path / "tiny", lora_dropout=lora_dropout)
    gpt, stream = model[0], packed_stream()
    kept_loss, kept_grads, _ = loss_and_grads(gpt, stream)
    kept_alive = _fc2_inputs_alive_after_forward(gpt, stream)
    use_swiglu_recompute(model)
    loss, grads, _ = loss_and_grads(gpt, stream)
    assert torch.equal(loss, kept_loss)
    assert grads.keys() == kept_grads.keys() and len(grads) > 0
    for name, grad in kept_grads.items():
        assert torch.equal(grads[name], grad), name
    alive = _fc2_inputs_alive_after_forward(gpt, stream)
    assert len(alive) == len(gpt.decoder.layers)
    if lora_dropout:  # the adapter keeps a dropped-out copy instead: nothing to free either way
        assert not any(kept_alive) and not any(alive)
    else:
        assert all(kept_alive) and not any(alive)


def test_other_saved_tensors_are_kept_as_they_are():
    from primus_bridge.engine.megatron.compat.swiglu_recompute import SwiGLURecipe, pack, unpack

    x = torch.randn(4, 6, requires_grad=True)
    y = x * 2
    assert pack(y) is y and pack(x) is x and unpack(y) is y
    assert not isinstance(pack(y.view(2, 12)), SwiGLURecipe)
