"""Is the fp8-loss suite's comparison well posed? The same check on a small Llama on CPU, on both data sources.

    python benchmarks/fp8_loss_cpu_check.py [--steps 200] [--seq_length 1024] [--lr 2e-3] [--out FILE]

The fp8-loss suite (primus_bridge/bench/suites.py) trains one LoRA model twice on the same batches, the frozen
base in bf16 and in FP8 (precision.fp8_frozen_base), and asks every 10-step window's mean loss of the FP8 run to
lie within 1% of bf16's. This script does the same on CPU with the bench's own pieces: the bench's case config
and data (workspace.py: the repeated sample, or the synthetic text process), the hf engine's model, batches,
optimizer and train step, and the FP8 linear of fp8_frozen_base.py (`fp8_linear`: e4m3 weights with one scale
per output channel, e4m3 activations per token, e5m2 output gradients, `torch._scaled_mm` forward and input
gradient; eager on the CPU, whose `_scaled_mm` accumulates in float32 as the GPU's does). The reference
run keeps the base in float32.

It prints, and writes as JSON (default benchmarks/reports/fp8-loss-cpu-check/<date>.json), the largest 10-step
window gap and per-step gap of each data source, the loss curves, and for the text process the entropy rate its
loss can approach (estimated from the process's own probabilities).
"""

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from primus_bridge.bench import text_process  # noqa: E402
from primus_bridge.bench.metrics import loss_curve_gap  # noqa: E402
from primus_bridge.bench.suites import BenchCase, Suite  # noqa: E402
from primus_bridge.bench.workspace import (  # noqa: E402
    TOKENIZER_DIR, Workspace, build_config, case_values, consumed_rows, prepare_case_data,
)
from primus_bridge.engine.megatron.fp8_frozen_base import OCP_FORMATS, fp8_linear, quantize_weight  # noqa: E402
from primus_bridge.models.tiny import TinyLlamaSpec, build_tiny_llama  # noqa: E402

SPEC = TinyLlamaSpec(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2)
WARMUP_STEPS = 2
WINDOW_STEPS = 10
SOURCES = ("text-process", "sample")


def quantize_frozen_base(model) -> int:
    """Every LoRA layer's frozen base linear computes through the engine's FP8 linear (`fp8_linear`: quantized
    weights, `torch._scaled_mm` forward and input gradient, eager on the CPU); returns how many."""
    from peft.tuners.lora import Linear as LoraLinear

    converted = 0
    for module in model.modules():
        if isinstance(module, LoraLinear):
            base = module.base_layer
            codes, scale = quantize_weight(base.weight.detach(), OCP_FORMATS.values)
            base.forward = lambda x, codes=codes, scale=scale.view(-1): fp8_linear(x, codes, scale, OCP_FORMATS)
            converted += 1
    return converted


def cpu_suite(source: str, steps: int, seq_length: int) -> Suite:
    case = BenchCase(name=f"tiny-lora-s{seq_length}-gb1", shape="tiny", mode="lora", seq_length=seq_length,
                     micro_batch_size=1, global_batch_size=1, expected_s=(("hf", 60),))
    return Suite(name="fp8-loss-cpu-check", description="", device="cpu", systems=("hf",),
                 warmup_steps=WARMUP_STEPS, timed_steps=steps, cases=(case,), peak_squares=(), data_source=source)


def train(cfg, split, order: list[int], fp8: bool) -> tuple[list[float], int]:
    """Per-step losses of one run of the hf engine's train step on the rows `order`, one row a step."""
    from primus_bridge.engine.hf.batches import make_batch
    from primus_bridge.engine.hf.distributed import DistEnv
    from primus_bridge.engine.hf.model import build_model
    from primus_bridge.engine.hf.optim import build_optimizer, build_scheduler
    from primus_bridge.engine.hf.precision import choose_precision
    from primus_bridge.engine.hf.step import train_step

    env = DistEnv(0, 1, 0, torch.device("cpu"))
    torch.manual_seed(cfg.training.seed)  # the same LoRA initialisation in both runs
    loaded = build_model(cfg, env)
    converted = quantize_frozen_base(loaded.model) if fp8 else 0
    optimizer = build_optimizer(loaded.model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    precision = choose_precision(cfg, env.device)
    losses = []
    for index in order:
        batch = make_batch(split, [index], env.device, loaded.attn_implementation, torch.float32)
        stats = train_step(loaded.model, optimizer, scheduler, [batch], env, precision, cfg.training.clip_grad,
                           loaded.logits_to_keep)
        losses.append(stats.loss)
    return losses, converted


def entropy_floor(data_file: Path, split) -> dict:
    """The text process's information content per trained token: the loss a model that knew the process exactly
    would reach on these rows (outputs' choices over the trained tokens, which are the outputs and their EOS)."""
    records = sum(1 for _ in data_file.open(encoding="utf-8"))
    process = text_process.TextProcess()
    words = sum(len(process.record()["output"].split()) for _ in range(records))
    trained = sum(int((split[i].labels != -100).sum()) for i in range(len(split)))
    return {"records": records, "trained_tokens": trained, "nats_per_word": process.output_nats / words,
            "nats_per_trained_token": process.output_nats / trained}


def window_means(losses: list[float]) -> list[float]:
    timed = losses[WARMUP_STEPS:]
    return [sum(timed[i:i + WINDOW_STEPS]) / len(timed[i:i + WINDOW_STEPS]) for i in range(0, len(timed),
                                                                                      WINDOW_STEPS)]


def check_source(source: str, args, model_dir: Path, workspace: Workspace) -> dict:
    from primus_bridge.data import prepare_data
    from primus_bridge.data.tokenizer import load_tokenizer

    suite = cpu_suite(source, args.steps, args.seq_length)
    case = suite.cases[0]
    data_file, rows, fingerprint = prepare_case_data(case, suite, model_dir, workspace)
    values = case_values(case, suite, "hf", model_dir, data_file, workspace)
    values["training"]["lr"] = args.lr
    cfg = build_config(values, case, 0)
    split = prepare_data(cfg, load_tokenizer(cfg)).train
    order = consumed_rows(split, cfg.data.seed, WARMUP_STEPS + args.steps)
    started = time.perf_counter()
    reference, _ = train(cfg, split, order, fp8=False)
    quantized, converted = train(cfg, split, order, fp8=True)
    gap = loss_curve_gap(quantized, reference, WARMUP_STEPS + 1, WINDOW_STEPS)
    result = {
        "data_file": data_file.name, "packed_rows": rows, "data_sha256": fingerprint, "fp8_linears": converted,
        "seconds": round(time.perf_counter() - started, 1),
        "max_window_gap": gap.max_window_gap, "worst_window_first_step": gap.worst_window_first_step,
        "max_step_gap": gap.max_step_gap, "worst_step": gap.worst_step, "summary": gap.describe(),
        "window_means_reference": window_means(reference), "window_means_fp8": window_means(quantized),
        "losses_reference": reference, "losses_fp8": quantized,
    }
    if source == "text-process":
        result["entropy_floor"] = entropy_floor(data_file, split)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--seq_length", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=2e-3, help="LoRA learning rate (constant)")
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks/reports/fp8-loss-cpu-check" / f"{datetime.date.today()}.json")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace(Path(tmp))
        model_dir = build_tiny_llama(TOKENIZER_DIR, Path(tmp) / "model", SPEC)
        results = {source: check_source(source, args, model_dir, workspace) for source in SOURCES}
    report = {"date": str(datetime.date.today()), "model": SPEC.__dict__, "lora_rank": 16, "lr": args.lr,
              "warmup_steps": WARMUP_STEPS, "timed_steps": args.steps, "seq_length": args.seq_length,
              "window_steps": WINDOW_STEPS, "torch": torch.__version__, "sources": results}
    for source, result in results.items():
        floor = result.get("entropy_floor")
        print(f"{source}: {result['summary']}; loss {result['losses_reference'][0]:.3f} -> "
              f"{result['losses_reference'][-1]:.4f} (fp32) / {result['losses_fp8'][-1]:.4f} (fp8)"
              + (f"; entropy floor {floor['nats_per_trained_token']:.2f} nats/token" if floor else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
