"""On a GPU: Llama-3-8B's LM head and loss, Megatron-Core's fused cross-entropy against the chunked loss."""

import pytest
import torch

from primus_bridge.engine.megatron.chunked_head_loss import FrozenHeadCrossEntropy


@pytest.mark.gpu
def test_llama3_8b_head_on_the_gpu_peak_and_time():
    """Llama-3-8B's head (h 4096, vocab 128,256) on 4,096 bf16 tokens: Megatron-Core's fused cross-entropy vs
    the chunked loss, loss and gradient agreement, peak memory above the inputs, and time per forward+backward."""
    from primus_bridge.engine.megatron.runtime import prepare_megatron

    prepare_megatron()
    from megatron.core import parallel_state
    from megatron.core.fusions.fused_cross_entropy import fused_vocab_parallel_cross_entropy

    from primus_bridge.engine.megatron.process_group import single_process_group

    with single_process_group():
        _compare(parallel_state.get_tensor_model_parallel_group(), fused_vocab_parallel_cross_entropy)


def _compare(group, fused_vocab_parallel_cross_entropy):
    generator = torch.Generator(device="cuda").manual_seed(0)
    s, b, h, vocab = 4096, 1, 4096, 128256
    hidden = torch.randn(s, b, h, device="cuda", dtype=torch.bfloat16, generator=generator)
    weight = torch.randn(vocab, h, device="cuda", dtype=torch.bfloat16, generator=generator) * 0.02
    labels = torch.randint(0, vocab, (b, s), device="cuda", generator=generator)

    def megatron(x):
        logits = torch.nn.functional.linear(x, weight)
        return fused_vocab_parallel_cross_entropy(logits, labels.transpose(0, 1).contiguous(), group).transpose(0, 1)

    def chunked(x):
        return FrozenHeadCrossEntropy.apply(x, weight, labels, 1024)

    def measure(fn):
        x = hidden.clone().requires_grad_(True)
        fn(x).sum().backward()  # warm-up (compiles Megatron's fused helpers)
        x.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = fn(x)
        loss.sum().backward()
        end.record()
        torch.cuda.synchronize()
        return loss.detach().float(), x.grad.float(), torch.cuda.max_memory_allocated() - base, start.elapsed_time(end)

    ref_loss, ref_grad, ref_peak, ref_ms = measure(megatron)
    loss, grad, peak, ms = measure(chunked)
    print(f"megatron: {ref_peak / 2**30:.2f} GiB {ref_ms:.1f} ms; chunked: {peak / 2**30:.2f} GiB {ms:.1f} ms")
    torch.testing.assert_close(loss, ref_loss, rtol=2e-3, atol=2e-3)
    assert (grad - ref_grad).abs().max() < 0.02 * ref_grad.abs().max()
    assert peak < ref_peak - 3 * 2**30, (peak, ref_peak)
