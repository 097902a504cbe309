"""precision.fp8_frozen_base on a GPU: `_scaled_mm` on the FP8 units against references, a Llama-shaped LoRA model's
loss and base weight bytes against bf16, and (recorded, not asserted) the Llama-3-8B linear shapes' speed."""

from pathlib import Path

import pytest
import torch
from gpu_reports import write_report  # same folder
from gpu_timing import device_and_host_ms  # same folder
from test_fp8_frozen_base import _bytes, _loss_and_adapter_grads, _relative, _weight, rounding_bound  # same folder

from primus_bridge.engine.megatron.compile_settings import STATIC_TUNED, allow_a_graph_per_shape
from primus_bridge.engine.megatron.fp8_frozen_base import (
    FrozenFp8Linear,
    backward_operand,
    dequantize_rows,
    fp8_linear,
    quantize_rows,
)

pytestmark = pytest.mark.gpu


def test_scaled_mm_on_the_gpu_equals_the_references():
    """`_scaled_mm` on the GPU's FP8 units (formats of this GPU), the compiled linear (`fp8_linear`, as the engine
    runs it): forward and input gradient against the dequantized operands and the exact bf16 matmul."""
    from primus_bridge.engine.megatron.fp8_frozen_base import formats_for

    device = torch.device("cuda")
    formats = formats_for(device)
    weight = _weight(768, 512).to(device) / 10
    codes, scale = quantize_rows(weight, formats.values)
    scale = scale.view(-1)
    x = torch.randn(300, 512, device=device).bfloat16().requires_grad_(True)
    eager_codes, eager_scale = quantize_rows(x.detach(), formats.values)
    out = fp8_linear(x, codes, scale, formats)
    assert _relative(out, dequantize_rows(eager_codes, eager_scale) @ dequantize_rows(codes, scale).t()) < 2 ** -7
    assert _relative(out, x.detach().float() @ weight.t()) < 2 * rounding_bound(formats.values)
    grad = torch.randn_like(out)
    out.backward(grad)
    g_codes, g_scale = quantize_rows(grad, formats.gradients, column_scale=scale)
    assert _relative(x.grad, dequantize_rows(g_codes, g_scale) @ codes.float()) < 2 ** -7
    assert _relative(x.grad, grad.float() @ weight) < 2 * rounding_bound(formats.gradients)


GPU_LLAMA = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=16,
                 num_key_value_heads=4, initializer_range=0.02)


def _gpu_lora_model(hf_folder: Path, fp8: bool) -> list:
    from megatron.bridge import AutoBridge

    from primus_bridge.config.sections.lora import LoraConfig
    from primus_bridge.engine.megatron.fp8_frozen_base import use_fp8_frozen_base
    from primus_bridge.engine.megatron.layer_spec import use_local_spec
    from primus_bridge.engine.megatron.lora import build_peft

    provider = AutoBridge.from_hf_pretrained(str(hf_folder)).to_megatron_provider(load_weights=True)
    use_local_spec(provider)
    provider.bf16, provider.params_dtype = True, torch.bfloat16
    provider.finalize()
    peft = build_peft(LoraConfig(use_lora=True, lora_rank=16, lora_dropout=0.0, lora_target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    provider.register_pre_wrap_hook(lambda chunks: peft(chunks, training=True))
    if fp8:
        provider.register_post_wrap_hook(use_fp8_frozen_base)
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    torch.manual_seed(0)
    for name, param in model[0].named_parameters():
        if "linear_out" in name:  # B starts at zero: give the adapters an output, so their inputs get gradients
            torch.nn.init.normal_(param, std=0.02)
    model[0].train()
    return model


def test_llama_shaped_model_on_the_gpu_loss_and_bytes(tokenizer_dir, tmp_path):
    """A 4-layer Llama (hidden 1024, GQA, SwiGLU 2816) with LoRA on every projection, on random tokens: the FP8 base
    model's loss within 1% of the bf16 model's, adapter gradients aligned, the base linears' bytes halved."""
    from primus_bridge.engine.megatron.fp8_frozen_base import base_linears
    from primus_bridge.engine.megatron.process_group import single_process_group
    from primus_bridge.engine.megatron.runtime import prepare_megatron
    from primus_bridge.models.tiny import TinyLlamaSpec, build_tiny_llama

    prepare_megatron()
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    hf = build_tiny_llama(tokenizer_dir, tmp_path / "hf", TinyLlamaSpec(**GPU_LLAMA))
    tokens = torch.randint(0, 1000, (2, 1024), device="cuda", generator=torch.Generator("cuda").manual_seed(3))
    batch = {"input_ids": tokens, "labels": tokens.roll(-1, 1), "attention_mask": None,
             "position_ids": torch.arange(1024, device="cuda").expand(2, -1)}
    results = {}
    with single_process_group():
        for fp8 in (False, True):
            model_parallel_cuda_manual_seed(0)  # both builds draw the same adapters: only the base differs
            model = _gpu_lora_model(hf, fp8)
            layers = base_linears(model[0])
            adapters = {n: p.detach().clone() for n, p in model[0].named_parameters() if p.requires_grad}
            loss, grads = _loss_and_adapter_grads(model[0], batch)
            results[fp8] = loss, grads, _bytes(layers), {layer.weight.dtype for _, layer in layers}, adapters
            del model
    (loss16, grads16, bytes16, dtypes16, weights16), (loss8, grads8, bytes8, dtypes8, weights8) = \
        results[False], results[True]
    print(f"loss bf16 {loss16:.5f} fp8 {loss8:.5f}; base linear bytes bf16 {bytes16 / 2**20:.1f} MiB "
          f"fp8 {bytes8 / 2**20:.1f} MiB")
    assert dtypes16 == {torch.bfloat16} and len(dtypes8) == 1 and dtypes8 != dtypes16
    assert bytes8 * 2 == bytes16 and abs(loss8 - loss16) < 0.01 * loss16
    assert all(torch.equal(weight, weights16[name]) for name, weight in weights8.items())
    cosines = {name: float(torch.nn.functional.cosine_similarity(grad.flatten(), grads16[name].flatten(), dim=0))
               for name, grad in grads8.items()}
    print("adapter gradient cosines fp8 vs bf16:", {name: round(c, 4) for name, c in cosines.items()})
    assert min(cosines.values()) > 0.95, min(cosines.items(), key=lambda item: item[1])


LLAMA3_8B_LINEARS = {"linear_qkv": (4096, 6144), "linear_proj": (4096, 4096), "linear_fc1": (4096, 28672),
                     "linear_fc2": (14336, 4096)}
"""(in, out) of Llama-3-8B's base linears."""


def _compiled(function):
    allow_a_graph_per_shape()  # a graph for each of the 8 shapes timed, as the engine allows its linear
    return torch.compile(function, **STATIC_TUNED)


def _linear_tensors(formats, tokens: int, inp: int, out: int) -> tuple[torch.Tensor, ...]:
    """A base linear [out, in] in bf16 and as FP8 codes with their scales [out], an input x [tokens, in] that takes a
    gradient and an output gradient [tokens, out]."""
    weight = torch.randn(out, inp, device="cuda", dtype=torch.bfloat16) * 0.02
    codes, scale = quantize_rows(weight, formats.values)
    x = torch.randn(tokens, inp, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(tokens, out, device="cuda", dtype=torch.bfloat16)
    return weight, codes, scale.view(-1), x, grad


def _fp8_parts(formats, tokens: int, inp: int, out: int) -> dict[str, float]:
    """Device ms of forward + input gradient of one base linear [out, in] at `tokens`: bf16, FP8 as the engine runs
    it (`fp8_linear`: compiled whole) and eagerly, and each part of the FP8 one alone: the two matmuls (e5m2
    gradients as used, e4m3 for comparison), the two quantizations and the weight re-layout (compiled alone here,
    as Inductor emits them inside the graphs; the re-layout also as PyTorch's eager copy). Host ms for the three
    whole calls: where host >= device, a training step of such layers is bound by Python, not the GPU."""
    weight, codes, scale, x, grad = _linear_tensors(formats, tokens, inp, out)
    quantize, relayout = _compiled(quantize_rows), _compiled(backward_operand)
    x_codes, x_scale = quantize(x.detach(), formats.values)
    g5, g5_scale = quantize(grad, formats.gradients, column_scale=scale)
    g4, g4_scale = quantize(grad, formats.values, column_scale=scale)
    second, ones = relayout(codes), torch.ones(1, inp, device="cuda")

    def backward_mm(g, g_scale):
        return lambda: torch._scaled_mm(g, second, scale_a=g_scale, scale_b=ones, out_dtype=torch.bfloat16)

    steps = {
        "bf16": lambda: torch.nn.functional.linear(x, weight).backward(grad),
        "fp8": lambda: fp8_linear(x, codes, scale, formats).backward(grad),
        "fp8_eager": lambda: FrozenFp8Linear.apply(x, codes, scale, formats).backward(grad),
        "fp8_forward_mm": lambda: torch._scaled_mm(x_codes, codes.t(), scale_a=x_scale, scale_b=scale.view(1, -1),
                                                   out_dtype=torch.bfloat16),
        "fp8_backward_mm_e5m2": backward_mm(g5, g5_scale),
        "fp8_backward_mm_e4m3": backward_mm(g4, g4_scale),
        "quantize_x": lambda: quantize(x.detach(), formats.values),
        "quantize_grad": lambda: quantize(grad, formats.gradients, column_scale=scale),
        "relayout_compiled": lambda: relayout(codes),
        "relayout_eager": lambda: codes.t().contiguous(),
    }
    times = {name: device_and_host_ms(step, repeats=30) for name, step in steps.items()}
    parts = {name: round(device, 4) for name, (device, _) in times.items()}
    parts.update({f"{name}_host_ms": round(times[name][1], 4) for name in ("bf16", "fp8", "fp8_eager")})
    return parts


def test_llama3_8b_linear_shapes_fp8_against_bf16_speed(repo):
    """Records (asserts nothing about speed): forward + input gradient of each 8B base linear, bf16 (Megatron-Core's
    frozen-weight matmul) against FP8 with the quantization included, and where the FP8 time goes; JSON in
    $PRIMUS_REPORT_DIR (default benchmarks/reports/megatron-engine)."""
    from primus_bridge.engine.megatron.fp8_frozen_base import formats_for

    formats = formats_for(torch.device("cuda"))
    record = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "unit": "device ms per call",
              "shapes": {}}
    for tokens in (4096, 8192):
        print(f"\n{record['device']}: {tokens} tokens, forward + input gradient (device ms)")
        for name, (inp, out) in LLAMA3_8B_LINEARS.items():
            parts = _fp8_parts(formats, tokens, inp, out)
            record["shapes"][f"{name} {inp}->{out} x{tokens}"] = parts
            flops = 2 * 2 * tokens * inp * out
            print(f"{name:12s} {inp:>6d}->{out:<6d} bf16 {parts['bf16']:6.3f} ({flops / parts['bf16'] / 1e9:4.0f} "
                  f"TFLOP/s) | fp8 {parts['fp8']:6.3f} ({flops / parts['fp8'] / 1e9:4.0f}, "
                  f"{parts['bf16'] / parts['fp8']:.2f}x) eager {parts['fp8_eager']:6.3f} | host ms bf16 "
                  f"{parts['bf16_host_ms']:.3f} fp8 {parts['fp8_host_ms']:.3f} eager {parts['fp8_eager_host_ms']:.3f}"
                  f" | mm fwd "
                  f"{parts['fp8_forward_mm']:.3f} bwd e5m2 {parts['fp8_backward_mm_e5m2']:.3f} e4m3 "
                  f"{parts['fp8_backward_mm_e4m3']:.3f} | quantize {parts['quantize_x']:.3f} / "
                  f"{parts['quantize_grad']:.3f} | re-layout {parts['relayout_compiled']:.3f} (eager "
                  f"{parts['relayout_eager']:.3f})")
    write_report(repo, "fp8-linear-parts.json", record)


COMPILE_VARIANTS = {
    "engine": STATIC_TUNED,  # what compiled_fp8_linear does: a graph per shape, its kernels tuned
    "static_untuned": {"dynamic": False, "fullgraph": True},
    "dynamic": {"dynamic": True, "fullgraph": True},  # the engine's setting until 2026-12-06: one graph for all shapes
}
"""torch.compile settings timed against each other for the FP8 linear's quantizations and re-layout (on the H100 of
2026-12-06 the engine's was fastest, then static_untuned; `compile_settings` says by how much)."""


def _variant_parts(formats, variant: str, tokens: int, inp: int, out: int) -> dict[str, float]:
    """Device ms of the FP8 linear's memory-bound parts (and the whole forward + input gradient) compiled with one
    of COMPILE_VARIANTS, beside one-pass lower bounds: an eager cast of the same tensor to FP8 (reads it once,
    writes one byte an element) and a copy of the FP8 weight (what a re-layout moves)."""
    from primus_bridge.engine.megatron.fp8_frozen_base import _apply_frozen_fp8_linear

    torch._dynamo.reset()
    settings = COMPILE_VARIANTS[variant]
    quantize, relayout = (torch.compile(function, **settings) for function in (quantize_rows, backward_operand))
    whole = torch.compile(_apply_frozen_fp8_linear, **settings)
    _, codes, scale, x, grad = _linear_tensors(formats, tokens, inp, out)
    steps = {
        "quantize_x": lambda: quantize(x.detach(), formats.values),
        "quantize_grad": lambda: quantize(grad, formats.gradients, column_scale=scale),
        "relayout": lambda: relayout(codes),
        "fp8_linear": lambda: whole(x, codes, scale, formats).backward(grad),
        "bound_cast_x": lambda: x.detach().to(formats.values),
        "bound_cast_grad": lambda: grad.to(formats.gradients),
        "bound_copy_weight": lambda: codes.clone(),
    }
    return {name: round(device_and_host_ms(step, repeats=20)[0], 4) for name, step in steps.items()}


def test_fp8_compile_variants_speed(repo):
    """Records (asserts nothing about speed): the FP8 linear's quantizations and re-layout ran at a third to a half
    of the memory bandwidth in 2026-12-06's parts timing (fp8-linear-parts.json); this times them, and the whole
    linear, under each of COMPILE_VARIANTS at the 8B shapes (4,096 tokens), beside one-pass lower bounds. JSON
    fp8-compile-variants.json in $PRIMUS_REPORT_DIR (default benchmarks/reports/megatron-engine)."""
    from primus_bridge.engine.megatron.fp8_frozen_base import formats_for

    formats = formats_for(torch.device("cuda"))
    record = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "unit": "device ms per call",
              "tokens": 4096, "shapes": {}}
    for name, (inp, out) in LLAMA3_8B_LINEARS.items():
        for variant in COMPILE_VARIANTS:
            parts = _variant_parts(formats, variant, 4096, inp, out)
            record["shapes"].setdefault(f"{name} {inp}->{out}", {})[variant] = parts
            print(f"{name:12s} {variant:13s} " + " ".join(f"{key} {value:.3f}" for key, value in parts.items()))
    write_report(repo, "fp8-compile-variants.json", record)
