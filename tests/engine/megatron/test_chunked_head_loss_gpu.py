"""On a GPU: Llama-3's LM head and loss, Megatron-Core's fused cross-entropy against the chunked loss, eager and
compiled."""

import pytest
import torch
from gpu_reports import write_report  # this folder is on sys.path

from primus_bridge.engine.megatron.chunked_head_loss import EAGER_HEAD_LOSS_SWITCH, FrozenHeadCrossEntropy

HEADS = {"llama3-8b": (4096, 4096), "llama3.2-1b": (8192, 2048)}
"""Tokens of the bench's micro batch and hidden size; both have Llama-3's 128,256-entry vocabulary."""


@pytest.mark.gpu
def test_llama3_heads_on_the_gpu_peak_and_time(repo, monkeypatch):
    """Each head on bf16 tokens: Megatron-Core's fused cross-entropy vs the chunked loss with its chunk kernels eager
    (PRIMUS_BRIDGE_EAGER_HEAD_LOSS=1) and compiled: loss and gradient agreement, peak memory above the inputs, and
    device time per forward+backward. JSON chunked-head-loss.json in $PRIMUS_REPORT_DIR."""
    from primus_bridge.engine.megatron.runtime import prepare_megatron

    prepare_megatron()
    from megatron.core import parallel_state
    from megatron.core.fusions.fused_cross_entropy import fused_vocab_parallel_cross_entropy

    from primus_bridge.engine.megatron.process_group import single_process_group

    record = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "unit": "ms, GiB", "heads": {}}
    with single_process_group():
        group = parallel_state.get_tensor_model_parallel_group()
        for name, (tokens, hidden_size) in HEADS.items():
            record["heads"][name] = _compare(group, fused_vocab_parallel_cross_entropy, tokens, hidden_size,
                                             monkeypatch)
    print(f"\n{record}")
    write_report(repo, "chunked-head-loss.json", record)
    for name, found in record["heads"].items():
        assert found["compiled_ms"] < found["eager_ms"], (name, found)


def _compare(group, fused_vocab_parallel_cross_entropy, s: int, h: int, monkeypatch) -> dict:
    generator = torch.Generator(device="cuda").manual_seed(0)
    b, vocab = 1, 128256
    hidden = torch.randn(s, b, h, device="cuda", dtype=torch.bfloat16, generator=generator)
    weight = torch.randn(vocab, h, device="cuda", dtype=torch.bfloat16, generator=generator) * 0.02
    labels = torch.randint(0, vocab, (b, s), device="cuda", generator=generator)

    def megatron(x):
        logits = torch.nn.functional.linear(x, weight)
        return fused_vocab_parallel_cross_entropy(logits, labels.transpose(0, 1).contiguous(), group).transpose(0, 1)

    def chunked(x):
        return FrozenHeadCrossEntropy.apply(x, weight, labels, 1024)

    def measure(fn, repeats: int = 5):
        x = hidden.clone().requires_grad_(True)
        fn(x).sum().backward()  # warm-up (compiles Megatron's fused helpers and the chunk kernels)
        x.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            x.grad = None
            loss = fn(x)
            loss.sum().backward()
        end.record()
        torch.cuda.synchronize()
        return (loss.detach().float(), x.grad.float(), (torch.cuda.max_memory_allocated() - base) / 2**30,
                start.elapsed_time(end) / repeats)

    ref_loss, ref_grad, ref_peak, ref_ms = measure(megatron)
    monkeypatch.setenv(EAGER_HEAD_LOSS_SWITCH, "1")
    eager_loss, eager_grad, eager_peak, eager_ms = measure(chunked)
    monkeypatch.delenv(EAGER_HEAD_LOSS_SWITCH)
    loss, grad, peak, ms = measure(chunked)
    for got_loss, got_grad in ((eager_loss, eager_grad), (loss, grad)):
        torch.testing.assert_close(got_loss, ref_loss, rtol=2e-3, atol=2e-3)
        assert (got_grad - ref_grad).abs().max() < 0.02 * ref_grad.abs().max()
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
    assert peak < ref_peak - 3 * s / 4096, (peak, ref_peak)  # GiB: the whole batch's logits are never held
    return {"tokens": s, "hidden": h, "megatron_fused_ms": round(ref_ms, 2),
            "megatron_fused_peak_gib": round(ref_peak, 2),
            "eager_ms": round(eager_ms, 2), "eager_peak_gib": round(eager_peak, 2), "compiled_ms": round(ms, 2),
            "compiled_peak_gib": round(peak, 2)}
