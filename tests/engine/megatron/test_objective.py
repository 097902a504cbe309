"""One objective on both engines: a step's loss is the mean cross-entropy over its trained tokens (every micro
batch, every data-parallel rank), and the optimizer clips the gradient of that mean.

From the same weights, one step of two micro batches with 136 and 12 trained tokens, in fp32:
- megatron: the engine's ConfigContainer, Megatron-Bridge's train_step with its GPT forward step and loss (what
  finetune() runs), so Megatron-Core's forward_backward_func, finalize_model_grads and the optimizer's clipping;
- hf: the hf engine's model, optimizer and train_step.
Both report the same loss and gradient norm and clip to the same gradients. Megatron-Core's default objective
(each micro batch's own mean, averaged over micro batches) gives other gradients: the test tells them apart.
"""

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from fp32_megatron_model import unwrap  # this folder is on sys.path
from torch.overrides import TorchFunctionMode

from primus_bridge.config import PrimusConfig
from primus_bridge.data.packed import IGNORE_INDEX, PackedRow

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
SEQ_LENGTH = 160
MICRO_BATCHES = (  # (document lengths, trained tokens per document); each row is padded to SEQ_LENGTH
    ((70, 80), (68, 68)),   # 136 trained tokens
    ((100, 50), (8, 4)),    # 12 trained tokens
)
CLIP_GRAD = 1e-3  # below both engines' gradient norm, so the clipped gradient is what the test compares


@dataclass
class StepOutcome:
    loss: float
    grad_norm: float
    grads: dict[str, torch.Tensor]
    """The gradient the optimizer stepped with, by HF parameter name."""


def _row(lengths, trained, vocab: int, generator: np.random.Generator) -> PackedRow:
    """One packed row: documents of random tokens, each training its last `trained` next-token targets."""
    input_ids = np.zeros(SEQ_LENGTH, np.int64)
    labels = np.full(SEQ_LENGTH, IGNORE_INDEX, np.int64)
    position_ids = np.zeros(SEQ_LENGTH, np.int64)
    start = 0
    for length, count in zip(lengths, trained):
        ids = generator.integers(0, vocab, length)
        input_ids[start:start + length] = ids
        position_ids[start:start + length] = np.arange(length)
        labels[start + length - 1 - count:start + length - 1] = ids[length - count:]
        start += length
    position_ids[start:] = np.arange(SEQ_LENGTH - start)
    seq_lens = np.array([*lengths, SEQ_LENGTH - start], np.int32)
    return PackedRow(input_ids, labels, (labels != IGNORE_INDEX).astype(np.float32), position_ids, seq_lens)


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory, tokenizer_dir):
    from primus_bridge.models.tiny import build_tiny_llama

    return build_tiny_llama(tokenizer_dir, tmp_path_factory.mktemp("hf") / "tiny")


@pytest.fixture(scope="module")
def rows(tiny_hf):
    vocab = json.loads((tiny_hf / "config.json").read_text())["vocab_size"]
    generator = np.random.default_rng(7)
    made = [_row(lengths, trained, vocab, generator) for lengths, trained in MICRO_BATCHES]
    assert [int(r.loss_mask.sum()) for r in made] == [136, 12]
    return made


def _config(engine: str, hf_folder: Path, clip_grad: float) -> PrimusConfig:
    return PrimusConfig.model_validate({
        "engine": engine, "hf_model_name_or_path": str(hf_folder), "convert_from_hf": engine == "megatron",
        "training": {"micro_batch_size": 1, "global_batch_size": len(MICRO_BATCHES), "train_iters": 10,
                     "lr": 1e-3, "min_lr": 1e-4, "lr_warmup_iters": 0, "clip_grad": clip_grad},
        "data": {"data_path": str(REPO / "examples/data/alpaca_sample.jsonl"), "seq_length": SEQ_LENGTH},
        "precision": {"bf16": False},
        "parallelism": {"use_distributed_optimizer": False},
    })


# --- hf engine ---------------------------------------------------------------------------------------------


def _hf_step(hf_folder: Path, rows: list[PackedRow], clip_grad: float) -> StepOutcome:
    from primus_bridge.engine.hf.batches import make_batch
    from primus_bridge.engine.hf.distributed import DistEnv
    from primus_bridge.engine.hf.model import build_model
    from primus_bridge.engine.hf.optim import build_optimizer, build_scheduler
    from primus_bridge.engine.hf.precision import choose_precision
    from primus_bridge.engine.hf.step import train_step

    cfg, env = _config("hf", hf_folder, clip_grad), DistEnv(0, 1, 0, torch.device("cpu"))
    loaded = build_model(cfg, env)
    optimizer = build_optimizer(loaded.model, cfg)
    names = {param: name for name, param in loaded.model.named_parameters()}
    stepped = {}
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: stepped.update(
        {names[p]: p.grad.clone() for group in opt.param_groups for p in group["params"]}))
    batches = [make_batch(rows, [index], env.device, loaded.attn_implementation, torch.float32)
               for index in range(len(rows))]
    stats = train_step(loaded.model, optimizer, build_scheduler(optimizer, cfg), batches, env,
                       choose_precision(cfg, env.device), cfg.training.clip_grad, loaded.logits_to_keep)
    return StepOutcome(stats.loss, stats.grad_norm, stepped)


# --- megatron engine ---------------------------------------------------------------------------------------


class CudaTensorsOnCpu(TorchFunctionMode):
    """CPU accommodation: Megatron-Core makes a few step tensors on "cuda" (the token count, the optimizer's scale),
    Megatron-Bridge moves each batch with `.cuda()`, and the gradient clipping asserts its gradients' type is
    'torch.cuda.FloatTensor'; here the tensors stay on the CPU and CPU float tensors answer to that type."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            return func(*args).replace("torch.", "torch.cuda.", 1)
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "cuda":
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


@pytest.fixture
def cuda_streams_on_cpu(monkeypatch):
    """CPU accommodation: Megatron-Core's DDP wrapper and gradient buffers order their work on CUDA streams; the
    CPU has one stream (torch.cpu's stand-ins)."""
    monkeypatch.setattr(torch.cuda, "Stream", lambda *args, **kwargs: torch.cpu.Stream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *args, **kwargs: torch.cpu.current_stream())
    monkeypatch.setattr(torch.cuda, "stream", torch.cpu.stream)


@contextlib.contextmanager
def _microbatch_calculator(global_batch_size: int):
    from megatron.core import num_microbatches_calculator as calculator

    calculator.init_num_microbatches_calculator(0, None, global_batch_size, 1, 1)
    try:
        yield
    finally:
        calculator.destroy_num_microbatches_calculator()


def _megatron_model(cfg: PrimusConfig, hf_folder: Path, tmp_path: Path, per_token_loss: bool):
    """(bridge, container, model, optimizer, scheduler, process groups) as finetune()'s setup builds them, with the
    HF weights.

    `per_token_loss=False` puts back Megatron-Core's default objective (a mean per micro batch, averaged)."""
    from megatron.bridge import AutoBridge
    from megatron.bridge.training.optim import setup_optimizer
    from megatron.bridge.training.setup import _update_model_config_funcs
    from megatron.core.process_groups_config import ProcessGroupCollection

    from primus_bridge.engine.megatron.container import StartingPoint, build_config_container
    from primus_bridge.engine.megatron.layer_spec import use_local_spec

    bridge = AutoBridge.from_hf_pretrained(str(hf_folder))
    provider = bridge.to_megatron_provider(load_weights=True)  # finetune() loads these from its base checkpoint
    use_local_spec(provider)
    # Megatron-Core's fused cross-entropy hands back its logits gradient in bf16 (~5e-4 off the exact one); the
    # unfused one is exact to fp32 rounding, which an fp32 comparison needs
    provider.cross_entropy_loss_fusion = False
    base = tmp_path / "base"  # validate() wants the base checkpoint folder; the weights came with the provider
    base.mkdir(exist_ok=True)
    container = build_config_container(cfg, provider, StartingPoint(base, None, str(hf_folder)))
    container.train.exit_signal_handler = False
    if not per_token_loss:
        container.model.calculate_per_token_loss, container.ddp.average_in_collective = False, True
    container.validate()
    pg_collection = ProcessGroupCollection.use_mpu_process_groups()
    model = container.model.provide_distributed_model(ddp_config=container.ddp, use_cpu_initialization=True,
                                                      pg_collection=pg_collection)
    optimizer, scheduler = setup_optimizer(container.optimizer, container.scheduler, model)
    _update_model_config_funcs(model, container.model, container.ddp, optimizer, pg_collection=pg_collection)
    return bridge, container, model, optimizer, scheduler, pg_collection


def _megatron_step(hf_folder: Path, rows: list[PackedRow], clip_grad: float, tmp_path: Path,
                   per_token_loss: bool = True) -> StepOutcome:
    from megatron.bridge.training.gpt_step import forward_step
    from megatron.bridge.training.state import GlobalState
    from megatron.bridge.training.train import train_step
    from megatron.bridge.training.utils.train_utils import prepare_forward_step_func
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.pipeline_parallel.p2p_communication import P2PCommunicator

    from primus_bridge.engine.megatron.dataset import PackedStreams, pack_rows

    cfg = _config("megatron", hf_folder, clip_grad)
    streams = iter([PackedStreams.collate_fn([pack_rows([row])]) for row in rows])
    with CudaTensorsOnCpu(), _microbatch_calculator(len(rows)):
        bridge, container, model, optimizer, scheduler, pg = _megatron_model(cfg, hf_folder, tmp_path,
                                                                             per_token_loss)
        state = GlobalState()
        state.cfg = container
        loss_dict, skipped, *_, grad_norm, _, _ = train_step(
            prepare_forward_step_func(forward_step, state), streams, model, optimizer, scheduler, state, pg,
            get_forward_backward_func(), P2PCommunicator(pp_group=pg.pp, config=unwrap(model[0]).config))
    assert not skipped
    return StepOutcome(float(loss_dict["lm loss"]), float(grad_norm), _stepped_grads(bridge, model))


def _stepped_grads(bridge, model) -> dict[str, torch.Tensor]:
    """The gradients the optimizer stepped with (Megatron's main_grad), by HF name: written into the weights,
    then through the same converter as the weights (the layout changes are linear)."""
    with torch.no_grad():
        for param in model[0].parameters():
            param.copy_(param.main_grad)
    return {name: grad.clone() for name, grad in bridge.export_hf_weights(model, cpu=True, show_progress=False)}


# --- comparison --------------------------------------------------------------------------------------------


def _flat(grads: dict[str, torch.Tensor], names) -> torch.Tensor:
    return torch.cat([grads[name].double().flatten() for name in names])


def _agreement(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(relative error, cosine) of the whole gradient."""
    assert sorted(got) == sorted(expected)
    a, b = _flat(got, sorted(expected)), _flat(expected, sorted(expected))
    return float((a - b).norm() / b.norm()), float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_both_engines_step_on_the_mean_over_the_steps_trained_tokens(megatron_cpu, cuda_streams_on_cpu, tiny_hf,
                                                                      rows, tmp_path):
    hf = _hf_step(tiny_hf, rows, CLIP_GRAD)
    megatron = _megatron_step(tiny_hf, rows, CLIP_GRAD, tmp_path)
    assert hf.grad_norm > CLIP_GRAD * 10  # the clipping acts
    assert megatron.loss == pytest.approx(hf.loss, rel=1e-5)
    assert megatron.grad_norm == pytest.approx(hf.grad_norm, rel=1e-4)
    relative_error, cosine = _agreement(megatron.grads, hf.grads)
    assert relative_error < 1e-5 and cosine > 1 - 1e-9, (relative_error, cosine)
    for name, grad in hf.grads.items():
        assert (megatron.grads[name] - grad).norm() < 1e-4 * grad.norm(), name


def test_a_mean_per_micro_batch_is_another_objective(megatron_cpu, cuda_streams_on_cpu, tiny_hf, rows, tmp_path):
    """Megatron-Core's default averages each micro batch's own mean: the 12-token micro batch weighs as much as the
    136-token one. The hf engine's steps on each micro batch alone give that objective's gradient; the step on both
    differs from it."""
    per_micro_batch = [_hf_step(tiny_hf, [row], clip_grad=0.0) for row in rows]
    averaged = {name: sum(step.grads[name] for step in per_micro_batch) / len(rows)
                for name in per_micro_batch[0].grads}
    per_token = _hf_step(tiny_hf, rows, clip_grad=0.0)
    megatron_default = _megatron_step(tiny_hf, rows, 0.0, tmp_path, per_token_loss=False)
    relative_error, cosine = _agreement(megatron_default.grads, averaged)
    assert relative_error < 1e-5 and cosine > 1 - 1e-9, (relative_error, cosine)
    assert megatron_default.loss == pytest.approx(per_token.loss, rel=1e-5)  # Megatron-Bridge logs per token
    relative_error, cosine = _agreement(megatron_default.grads, per_token.grads)
    assert relative_error > 0.5 and cosine < 0.9, (relative_error, cosine)  # here: 1.68 and 0.55
