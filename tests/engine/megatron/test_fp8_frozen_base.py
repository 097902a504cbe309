"""precision.fp8_frozen_base: FP8 codes and scales, the `_scaled_mm` wiring (forward and input gradient) against
references (torch's CPU `_scaled_mm`), the option's checks, a tiny LoRA model converted and restored.
The GPU half is test_fp8_frozen_base_gpu.py."""

import math
import shutil

import pytest
import torch
from option_checks import config_with, problems_naming  # same folder

from primus_bridge.engine.megatron.compile_settings import GRAPHS_PER_FUNCTION, STATIC_TUNED, allow_a_graph_per_shape
from primus_bridge.engine.megatron.fp8_frozen_base import (
    FNUZ_FORMATS,
    OCP_FORMATS,
    SCALE_BUFFER,
    FrozenFp8Linear,
    _apply_frozen_fp8_linear,
    backward_operand,
    compiled_fp8_linear,
    dequantize_rows,
    quantize_rows,
)

pytestmark = pytest.mark.slow

MANTISSA_BITS = {torch.float8_e4m3fn: 3, torch.float8_e5m2: 2, torch.float8_e4m3fnuz: 3, torch.float8_e5m2fnuz: 2}
"""(torch.finfo's eps is wrong for e5m2fnuz in the installed torch: 0.125 instead of 0.25.)"""
FP8_DTYPES = list(MANTISSA_BITS)


def rounding_bound(dtype: torch.dtype) -> float:
    """Largest |dequantized - value| / row amax: half a step of the format's top binade, over its largest value."""
    largest = torch.finfo(dtype).max
    return 2.0 ** (math.floor(math.log2(largest)) - MANTISSA_BITS[dtype] - 1) / largest


def _weight(out_features=96, in_features=64, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-3, 1, out_features).view(-1, 1)  # channels of very different sizes
    return torch.randn(out_features, in_features, generator=generator) * scales


@pytest.mark.parametrize("dtype", FP8_DTYPES)
def test_round_trip_error_per_channel(dtype):
    weight = _weight()
    codes, scale = quantize_rows(weight, dtype)
    assert codes.dtype == dtype and scale.shape == (96, 1) and scale.dtype == torch.float32
    amax = weight.abs().amax(dim=1, keepdim=True)
    error = (dequantize_rows(codes, scale) - weight).abs()
    assert (error <= amax * rounding_bound(dtype) * (1 + 1e-6)).all()
    assert (error.amax(dim=1) > 0).all()  # the bound is met by rounding, not by an exact copy
    # each channel's largest entry lands on the format's largest value: the whole range is used
    assert torch.equal(codes.float().abs().amax(dim=1), torch.full((96,), torch.finfo(dtype).max))


def test_weights_are_quantized_in_row_chunks_as_a_whole(monkeypatch):
    from primus_bridge.engine.megatron import fp8_frozen_base

    weight = _weight(100, 64)
    monkeypatch.setattr(fp8_frozen_base, "WEIGHT_CHUNK_ROWS", 16)
    chunked = fp8_frozen_base.quantize_weight(weight, torch.float8_e4m3fn)
    whole = quantize_rows(weight, torch.float8_e4m3fn)
    assert torch.equal(chunked[0].view(torch.uint8), whole[0].view(torch.uint8)) and torch.equal(chunked[1], whole[1])


def test_bounds_are_the_formats_steps():
    assert rounding_bound(torch.float8_e4m3fn) == 16 / 448 and rounding_bound(torch.float8_e5m2) == 4096 / 57344
    assert rounding_bound(torch.float8_e4m3fnuz) == 8 / 240 and rounding_bound(torch.float8_e5m2fnuz) == 4096 / 57344
    assert torch.finfo(FNUZ_FORMATS.values).max == 240 and torch.finfo(OCP_FORMATS.values).max == 448


def test_zero_rows_and_column_scales():
    x = torch.randn(4, 32)
    x[2] = 0
    codes, scale = quantize_rows(x, torch.float8_e4m3fn)
    assert torch.isfinite(scale).all() and codes[2].float().abs().max() == 0
    column = torch.rand(32) + 0.5
    assert all(torch.equal(a, b) for a, b in zip(quantize_rows(x, torch.float8_e5m2, column),
                                                  quantize_rows(x * column, torch.float8_e5m2)))


def _linear_case(tokens=40, in_features=64, out_features=96, seed=1):
    generator = torch.Generator().manual_seed(seed)
    weight = _weight(out_features, in_features, seed) / 10
    x = torch.randn(tokens // 2, 2, in_features, generator=generator).bfloat16()
    codes, scale = quantize_rows(weight, OCP_FORMATS.values)
    return weight, x, codes, scale.view(-1)


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want).abs().max() / want.abs().max())


def test_operand_layouts_are_what_scaled_mm_takes():
    """First operand row-major, second column-major; row-wise scales (M, 1) and (1, N) in float32."""
    _, x, codes, scale = _linear_case()
    x_codes, x_scale = quantize_rows(x.reshape(-1, 64), OCP_FORMATS.values)
    assert x_codes.is_contiguous() and x_scale.shape == (40, 1) and x_scale.dtype == torch.float32
    forward_second = codes.t()
    assert forward_second.shape == (64, 96) and forward_second.stride() == (1, 64)  # column-major, a view
    assert forward_second.data_ptr() == codes.data_ptr() and scale.view(1, -1).shape == (1, 96)
    backward_second = backward_operand(codes)
    assert backward_second.shape == (96, 64) and backward_second.stride() == (1, 96)  # column-major copy
    assert torch.equal(backward_second.view(torch.uint8), codes.view(torch.uint8))


def test_forward_equals_the_dequantized_matmul():
    weight, x, codes, scale = _linear_case()
    out = FrozenFp8Linear.apply(x, codes, scale, OCP_FORMATS)
    assert out.shape == (20, 2, 96) and out.dtype == torch.bfloat16
    x_codes, x_scale = quantize_rows(x.reshape(-1, 64), OCP_FORMATS.values)
    same_operands = dequantize_rows(x_codes, x_scale) @ dequantize_rows(codes, scale).t()
    assert _relative(out.reshape(-1, 96), same_operands) < 2 ** -7  # bf16 output rounding only
    exact = x.float().reshape(-1, 64) @ weight.t()
    assert _relative(out.reshape(-1, 96), exact) < 2 * rounding_bound(OCP_FORMATS.values)


def test_input_gradient_equals_the_dequantized_matmul():
    weight, x, codes, scale = _linear_case()
    x = x.requires_grad_(True)
    out = FrozenFp8Linear.apply(x, codes, scale, OCP_FORMATS)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).bfloat16()
    out.backward(grad)
    assert x.grad.shape == x.shape and x.grad.dtype == torch.bfloat16
    g_codes, g_scale = quantize_rows(grad.reshape(-1, 96), OCP_FORMATS.gradients, column_scale=scale)
    same_operands = dequantize_rows(g_codes, g_scale) @ codes.float()
    assert _relative(x.grad.reshape(-1, 64), same_operands) < 2 ** -7
    exact = grad.float().reshape(-1, 96) @ weight
    assert _relative(x.grad.reshape(-1, 64), exact) < 2 * rounding_bound(OCP_FORMATS.gradients)


def test_no_input_gradient_asked_none_computed():
    _, x, codes, scale = _linear_case()
    codes.requires_grad_(False)
    out = FrozenFp8Linear.apply(x, codes, scale, OCP_FORMATS)
    assert not out.requires_grad


needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="torch.compile on the CPU needs a C++ compiler")


@needs_compiler
def test_compiled_linear_equals_the_eager_one_with_a_graph_for_each_shape():
    """`compiled_fp8_linear` (what runs on the GPU), compiled here by Inductor for the CPU: forward and input gradient
    equal to the eager `FrozenFp8Linear`'s for two projection shapes; a graph for each (static shapes), and none
    compiled again when a shape comes back."""
    from torch._dynamo.utils import counters

    def both(tokens: int, out_features: int, in_features: int, seed: int):
        _, x, codes, scale = _linear_case(tokens, in_features, out_features, seed)
        grad = torch.randn(tokens // 2, 2, out_features, generator=torch.Generator().manual_seed(seed)).bfloat16()
        results = []
        for linear in (compiled_fp8_linear(), FrozenFp8Linear.apply):
            leaf = x.clone().requires_grad_(True)
            out = linear(leaf, codes, scale, OCP_FORMATS)
            out.backward(grad)
            results.append((out, leaf.grad))
        (out, grad_x), (eager_out, eager_grad_x) = results
        assert _relative(out, eager_out.float()) <= 2 ** -7 and _relative(grad_x, eager_grad_x.float()) <= 2 ** -7

    counters.clear()
    both(40, 96, 64, seed=0)
    both(18, 64, 96, seed=1)
    assert counters["stats"]["unique_graphs"] == 2
    with torch._dynamo.config.patch(error_on_recompile=True):
        both(40, 96, 64, seed=2)
    assert counters["stats"]["unique_graphs"] == 2


LLAMA_LAYER_LINEARS = ((64, 96), (64, 64), (64, 224), (112, 64))
"""(in, out) of a Llama layer's four base linears in small: fused QKV, output, gate+up, down."""


def test_every_shape_and_grad_mode_of_a_llama_model_gets_its_graph():
    """Dynamo with the engine's settings (Dynamo alone here, no Inductor: the count is Dynamo's) compiles the FP8
    linear for every shape of a Llama layer in each way a LoRA run calls it: training, training with an input that
    needs no gradient (the first layer's) and evaluation. That is 12 graphs, past torch's default limit of 8, where
    a `fullgraph` compile fails; `allow_a_graph_per_shape` raises it."""
    from torch._dynamo.utils import counters

    settings = {key: value for key, value in STATIC_TUNED.items() if key != "options"}  # Inductor's only
    assert STATIC_TUNED["dynamic"] is False
    allow_a_graph_per_shape()
    torch._dynamo.reset()
    linear = torch.compile(_apply_frozen_fp8_linear, backend="eager", **settings)
    counters.clear()
    for in_features, out_features in LLAMA_LAYER_LINEARS:
        _, x, codes, scale = _linear_case(40, in_features, out_features)
        for needs_grad, grad_mode in ((True, True), (False, True), (False, False)):
            with torch.set_grad_enabled(grad_mode):
                out = linear(x.clone().requires_grad_(needs_grad), codes, scale, OCP_FORMATS)
            assert out.requires_grad == needs_grad
    assert counters["stats"]["unique_graphs"] == 3 * len(LLAMA_LAYER_LINEARS) <= GRAPHS_PER_FUNCTION


# -- the option's checks -----------------------------------------------------------------------------------------


def _cfg(**sections):
    return config_with({"engine": "megatron", "lora": {"use_lora": True}, "precision": {"fp8_frozen_base": True}},
                       **sections)


def _errors(cfg) -> list[str]:
    return problems_naming(cfg, "fp8_frozen_base")


def test_option_default_off_and_valid_with_lora():
    from primus_bridge.config import PrimusConfig

    assert PrimusConfig().precision.fp8_frozen_base is False
    assert _errors(_cfg()) == []


@pytest.mark.parametrize("sections,needs", [
    ({"lora": {"use_lora": False}}, "LoRA (lora.use_lora: true)"),
    ({"parallelism": {"tensor_model_parallel_size": 2}}, "parallelism.tensor_model_parallel_size: 1"),
    ({"engine": "hf"}, "engine: megatron"),
    ({"model": {"transformer_impl": "transformer_engine"}}, "model.transformer_impl: local"),
])
def test_config_refusals_name_the_key_and_the_fix(sections, needs):
    errors = _errors(_cfg(**sections))
    assert len(errors) == 1 and errors[0].startswith(f"precision.fp8_frozen_base: needs {needs}")
    assert errors[0].endswith("or set precision.fp8_frozen_base: false")


@pytest.mark.parametrize("precision,message", [
    ({"fp8": "hybrid"}, "precision.fp8_frozen_base and precision.fp8 ('hybrid') are both set"),
    ({"bf16": False, "fp16": True}, "precision.fp8_frozen_base: needs precision.bf16: true"),
])
def test_section_refusals(precision, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _cfg(precision=precision)


def test_engine_refusals_without_fp8_gpu_or_with_te_layers():
    from primus_bridge.config import ConfigError
    from primus_bridge.engine.megatron.fp8_frozen_base import check_fp8_frozen_base

    with pytest.raises(ConfigError, match="precision.fp8_frozen_base: the model uses TransformerEngine's layers"):
        check_fp8_frozen_base(_cfg(), "transformer_engine")
    check_fp8_frozen_base(_cfg(precision={"fp8_frozen_base": False}), "transformer_engine")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="precision.fp8_frozen_base: no GPU is visible .*set precision"):
            check_fp8_frozen_base(_cfg(), "local")


class _Props:
    def __init__(self, name, major=9, minor=0, arch=""):
        self.name, self.major, self.minor, self.gcnArchName = name, major, minor, arch


@pytest.mark.parametrize("hip,props,problem,formats", [
    (None, _Props("NVIDIA H100", 9, 0), None, OCP_FORMATS),
    (None, _Props("NVIDIA L40S", 8, 9), None, OCP_FORMATS),
    (None, _Props("NVIDIA A100", 8, 0), "compute capability 8.0) has no FP8 tensor cores", OCP_FORMATS),
    ("6.4", _Props("AMD Instinct MI300X", arch="gfx942:sramecc+:xnack-"), None, FNUZ_FORMATS),
    ("6.4", _Props("AMD Instinct MI355X", arch="gfx950:sramecc+:xnack-"), None, OCP_FORMATS),
    ("6.4", _Props("AMD Instinct MI250X", arch="gfx90a:sramecc+:xnack-"), "(gfx90a) has no FP8 matmul", OCP_FORMATS),
])
def test_device_formats_and_refusals(monkeypatch, hip, props, problem, formats):
    """The decision on what the device reports (its properties given here: no such GPU in this test machine)."""
    from primus_bridge.engine.megatron import fp8_frozen_base

    monkeypatch.setattr(torch.version, "hip", hip)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    device = torch.device("cuda", 0)
    found = fp8_frozen_base.fp8_matmul_problem(device)
    assert found is None if problem is None else problem in found
    assert fp8_frozen_base.formats_for(device) == formats


# -- a tiny LoRA model -------------------------------------------------------------------------------------------


def _tiny_bf16_lora(tokenizer_dir, out):
    from tiny_lora_model import tiny_lora_model  # this folder is on sys.path

    model = tiny_lora_model(tokenizer_dir, out, lora_dropout=0.0)
    model[0].bfloat16()
    return model


def _loss_and_adapter_grads(gpt, stream):
    loss = gpt(**stream)
    loss.float().mean().backward()
    grads = {n: p.grad.float().clone() for n, p in gpt.named_parameters() if p.requires_grad}
    gpt.zero_grad(set_to_none=True)
    return float(loss.detach().float().mean()), grads


def _bytes(layers) -> int:
    return sum(layer.weight.numel() * layer.weight.element_size() for _, layer in layers)


def test_tiny_lora_model_converts_and_trains_close_to_bf16(megatron_cpu, tokenizer_dir, tmp_path):
    """On the CPU (torch's CPU `_scaled_mm`): every base linear in FP8 at half the bytes, the rest untouched, and
    the loss and adapter gradients close to the bf16 model's."""
    from tiny_lora_model import packed_stream

    from primus_bridge.engine.megatron.fp8_frozen_base import base_linears, converted_layers, use_fp8_frozen_base

    model = _tiny_bf16_lora(tokenizer_dir, tmp_path / "hf")
    gpt, stream = model[0], packed_stream()
    layers = base_linears(gpt)
    assert sorted({name.rsplit(".", 1)[-1] for name, _ in layers}) == ["linear_fc1", "linear_fc2", "linear_proj",
                                                                       "linear_qkv"] and len(layers) == 8
    converted = {id(layer.weight) for _, layer in layers}
    others = {n: p.dtype for n, p in gpt.named_parameters() if id(p) not in converted}
    bf16_bytes = _bytes(layers)
    reference_loss, reference_grads = _loss_and_adapter_grads(gpt, stream)
    assert use_fp8_frozen_base(model) is model and len(converted_layers(model)) == 8
    assert all(layer.weight.dtype == torch.float8_e4m3fn and not layer.weight.requires_grad for _, layer in layers)
    assert _bytes(layers) * 2 == bf16_bytes
    scales = sum(getattr(layer, SCALE_BUFFER).numel() for _, layer in layers)
    assert scales == sum(layer.weight.shape[0] for _, layer in layers)  # one float32 per output channel
    assert {n: p.dtype for n, p in gpt.named_parameters() if n in others} == others  # all still bf16
    assert not any(SCALE_BUFFER in key for key in gpt.state_dict())
    loss, grads = _loss_and_adapter_grads(gpt, stream)
    assert abs(loss - reference_loss) < 0.01 * reference_loss
    assert grads.keys() == reference_grads.keys() and all(g.abs().max() > 0 for g in grads.values())
    for name, grad in grads.items():
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), reference_grads[name].flatten(), dim=0)
        assert cosine > 0.95, (name, float(cosine))


def test_restore_bf16_base_loads_the_checkpoint_weights_back(megatron_cpu, tokenizer_dir, tmp_path, monkeypatch):
    """What the train-end export gets: the base checkpoint's bf16 weights, bit for bit, and the bf16 matmul."""
    from megatron.bridge.training.checkpointing import _generate_model_state_dict
    from megatron.core import dist_checkpointing
    from primus_bridge.engine.megatron.fp8_frozen_base import base_linears, restore_bf16_base, use_fp8_frozen_base

    model = _tiny_bf16_lora(tokenizer_dir, tmp_path / "hf")
    gpt = model[0]
    original = {name: layer.weight.detach().clone() for name, layer in base_linears(gpt)}
    checkpoint = tmp_path / "base"
    checkpoint.mkdir()
    with monkeypatch.context() as cpu_only:  # the writer syncs CUDA after its (here CPU) copies
        cpu_only.setattr(torch.cuda, "synchronize", lambda: None)
        dist_checkpointing.save(_generate_model_state_dict([gpt], {"metadata": {}}), str(checkpoint))
    with torch.no_grad():  # the model now differs from its checkpoint: only a load brings the saved values back
        for _, layer in base_linears(gpt):
            layer.weight.add_(1.0)
    use_fp8_frozen_base(model)
    assert restore_bf16_base(model, checkpoint) == 8
    for name, layer in base_linears(gpt):
        assert layer.weight.dtype == torch.bfloat16 and torch.equal(layer.weight, original[name])
        assert not hasattr(layer, SCALE_BUFFER) and "_forward_impl" not in vars(layer)  # the class's matmul again


def test_container_registers_the_hook_after_the_wrap(megatron_cpu, tmp_path):
    from megatron.bridge.models.gpt_provider import GPTModelProvider

    from primus_bridge.engine.megatron.container import apply_model_settings
    from primus_bridge.engine.megatron.fp8_frozen_base import use_fp8_frozen_base

    provider = GPTModelProvider(num_layers=1, hidden_size=64, num_attention_heads=4)
    apply_model_settings(provider, _cfg())
    assert use_fp8_frozen_base in provider._post_wrap_hooks
    assert use_fp8_frozen_base not in getattr(provider, "_pre_wrap_hooks", [])
    plain = GPTModelProvider(num_layers=1, hidden_size=64, num_attention_heads=4)
    apply_model_settings(plain, _cfg(precision={"fp8_frozen_base": False}))
    assert use_fp8_frozen_base not in getattr(plain, "_post_wrap_hooks", [])
