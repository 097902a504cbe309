"""model.cuda_graph: full_iteration on the GPU: a run whose steps replay one recorded CUDA graph trains as the eager
run does (the same losses, step after step), for full SFT and for LoRA on a bf16 and on an FP8 base; each pair
side by side on the one GPU. Results (losses, step times) go to $PRIMUS_REPORT_DIR/cuda-graph.json."""

import os
import time
from pathlib import Path

import pytest
from test_finetune_gpu import _base_values, finish, launch, llama, record, work  # noqa: F401 - fixtures

pytestmark = pytest.mark.gpu

STEPS = 8
"""Step 1 eager, step 2 recorded and replayed, steps 3-8 replays."""
REPORT_NAME = "cuda-graph.json"
TOLERANCE = 0.01
"""Relative loss difference allowed per step: the replay runs the eager step's kernels on the same data, so the two
agree to the run-to-run variation of those kernels (flex attention's and the matmuls' reductions)."""


def _values(llama: Path, work: Path, name: str, mode: str, cuda_graph: str) -> dict:  # noqa: F811
    values = _base_values(llama, work, name) | {"convert_from_hf": True}
    values["training"] |= {"train_iters": STEPS, "lr_warmup_iters": 2, "log_interval": 1, "lr": 1.0e-4}
    values["checkpointing"] = {"no_output_ok": True}
    values["model"] = {"cuda_graph": cuda_graph, "transformer_impl": "local"}
    values["data"] |= {"data_path": "examples/data/alpaca_sample.jsonl", "dataset_format": "alpaca",
                       "prompt_template": "alpaca"}
    if mode != "sft":
        values["lora"] = {"use_lora": True, "lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                          "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"]}
        values["training"]["lr"] = 5.0e-4
    if mode == "lora-fp8":
        values["precision"] = {"bf16": True, "fp8_frozen_base": True}
    return values


def _launch_pair(llama: Path, work: Path, repo: Path, mode: str) -> dict:  # noqa: F811
    """The eager run, then (once its import of the HF model is there for both to read) the graphed one."""
    from primus_bridge.config import PrimusConfig
    from primus_bridge.engine.megatron.sources import cached_import, import_cache_dir, resolve_hf_model

    values = {graph: _values(llama, work, f"graph-{mode}-{graph}", mode, graph) for graph in ("none", "full_iteration")}
    eager = launch(work, repo, f"graph-{mode}-none", values["none"])
    source = resolve_hf_model(str(llama))
    imported = import_cache_dir(PrimusConfig.model_validate(values["none"]), source)
    while not cached_import(imported, source) and eager.process.poll() is None:
        time.sleep(2)
    return {"none": eager, "full_iteration": launch(work, repo, f"graph-{mode}-graph", values["full_iteration"])}


@pytest.mark.parametrize("mode", ["sft", "lora", "lora-fp8"])
def test_a_recorded_step_trains_as_the_eager_step(llama, work, repo, mode):  # noqa: F811 - fixtures
    runs = _launch_pair(llama, work, repo, mode)
    deadline = time.perf_counter() + int(os.environ.get("PRIMUS_GPU_RUN_TIMEOUT", "300"))
    results = {graph: finish(run, repo, deadline - time.perf_counter()) for graph, run in runs.items()}
    eager, graphed = results["none"]["losses"], results["full_iteration"]["losses"]
    record(repo, mode, {graph: {key: result[key] for key in ("losses", "step_times", "peak_memory_allocated",
                                                              "wall_seconds")}
                         for graph, result in results.items()} | {"side_by_side": True}, REPORT_NAME)
    assert len(eager) == len(graphed) == STEPS
    gaps = [abs(g - e) / abs(e) for e, g in zip(eager, graphed)]
    assert max(gaps) <= TOLERANCE, list(zip(eager, graphed))
    assert graphed[-1] < graphed[0], "the replayed steps learn"
