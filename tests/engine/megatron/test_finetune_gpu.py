"""finetune() end to end on the GPU: a 0.75B Llama-shaped model built here (random weights, saved as HF).

SFT 50 steps (alpaca) and LoRA 50 steps (sharegpt/chatml) on the project's sample data; exports checked
against the Megatron checkpoint and PEFT; a resumed run repeats the uninterrupted run's losses.
Results go to $PRIMUS_REPORT_DIR (default benchmarks/reports/megatron-engine) as JSON.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import gpu_reports  # same folder
from gpu_timing import device_ms  # same folder

pytestmark = pytest.mark.gpu

SHAPE = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16,
             num_key_value_heads=4, max_position_embeddings=4096, rope_theta=500000.0)
REPORT_NAME = "finetune.json"
"""In $PRIMUS_REPORT_DIR, with the runs' logs in finetune-logs.txt (the GPU is named inside: setup.versions.gpu)."""
CONCURRENT = os.environ.get("PRIMUS_GPU_CONCURRENT_RUNS") == "1"
"""Run SFT and LoRA side by side on the one GPU (each from its own HF import) when device time is short."""
STEPS = int(os.environ.get("PRIMUS_GPU_STEPS", "50"))
SAVE_EVERY = STEPS if CONCURRENT else 40
"""The SFT run also saves at step 40 for the resume test (not in the side-by-side mode)."""
RUN_TIMEOUT = int(os.environ.get("PRIMUS_GPU_RUN_TIMEOUT", "420"))
HERE = Path(__file__).resolve().parent
RUNS: dict[str, dict] = {}


def record(repo: Path, section: str, data: dict, report_name: str = REPORT_NAME) -> None:
    """Set `section` of the JSON report `report_name` (default this file's) in $PRIMUS_REPORT_DIR."""
    gpu_reports.record(repo, section, data, report_name)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return Path(os.environ.get("PRIMUS_GPU_WORKDIR") or tmp_path_factory.mktemp("gpu-finetune"))


@pytest.fixture(scope="module")
def llama(work, tokenizer_dir, repo) -> Path:
    """A Llama-shaped model (16 layers, hidden 2048, GQA 16/4) with random bf16 weights and the project tokenizer."""
    import megatron.core
    import transformers
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False, **SHAPE)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    folder = work / "llama-0.75b"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "megatron_core": megatron.core.__version__, "megatron_bridge": _version("megatron-bridge"),
                "gpu": torch.cuda.get_device_name(), "python": sys.version.split()[0]}
    record(repo, "setup", {"model": {**SHAPE, "vocab_size": len(tokenizer),
                                     "params": sum(p.numel() for p in model.parameters())}, "versions": versions})
    del model
    torch.cuda.empty_cache()
    return folder


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _yaml(path: Path, values: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(values))
    return path


@dataclass
class Launched:
    name: str
    process: subprocess.Popen
    log: Path
    result: Path
    started: float


def launch(work: Path, repo: Path, name: str, values: dict) -> Launched:
    """Start one torchrun of the driver (in its own session, so a timeout can stop its worker too)."""
    config, result, log = _yaml(work / f"{name}.yaml", values), work / f"{name}.result.json", work / f"{name}.log"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port",
               str(_free_port()), str(HERE / "finetune_driver.py"), "--config", str(config), "--result", str(result)]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=repo, stdout=handle, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    return Launched(name, process, log, result, time.perf_counter())


def finish(run: Launched, repo: Path, timeout: float) -> dict:
    """The run's TrainResult JSON; a failed or timed-out run fails with its log's tail."""
    try:
        returncode = run.process.wait(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(run.process.pid, signal.SIGKILL)
        returncode = f"timeout after {timeout:.0f} s"
    finally:
        _append_log(repo, run.name, run.log)
    assert returncode == 0, f"{run.name} failed ({returncode}):\n{run.log.read_text()[-6000:]}"
    return {**json.loads(run.result.read_text()), "wall_seconds": time.perf_counter() - run.started}


def train(work: Path, repo: Path, name: str, values: dict, timeout: int = 420) -> dict:
    return finish(launch(work, repo, name, values), repo, timeout)


def _append_log(repo: Path, name: str, log: Path) -> None:
    combined = gpu_reports.report_dir(repo) / "finetune-logs.txt"
    with open(combined, "a") as handle:
        handle.write(f"\n===== {name} =====\n{log.read_text()[-200_000:]}")


def _base_values(model: Path, work: Path, name: str) -> dict:
    return {
        "framework": "megatron_bridge", "engine": "megatron", "hf_model_name_or_path": str(model),
        "training": {"micro_batch_size": 2, "global_batch_size": 8, "train_iters": STEPS, "lr_warmup_iters": 5,
                     "log_interval": 10},
        "precision": {"bf16": True},
        "data": {"seq_length": 2048, "split": "100,0,0", "cache_dir": str(work / "data-cache")},
        "checkpointing": {"save": str(work / name), "save_interval": SAVE_EVERY},
    }


def _summary(result: dict) -> dict:
    """What the report keeps of a run; `side_by_side` marks runs that shared the GPU (tokens/s not comparable)."""
    losses = result["losses"]
    return {key: result[key] for key in ("steps_done", "losses", "step_times", "tokens_per_second",
                                         "tokens_per_step", "trainable_params", "total_params",
                                         "peak_memory_allocated", "peak_memory_reserved", "wall_seconds", "extra")
            } | {"side_by_side": CONCURRENT, "loss_first5": sum(losses[:5]) / 5, "loss_last5": sum(losses[-5:]) / 5,
                 "peak_memory_allocated_gib": result["peak_memory_allocated"] / 2**30}


def _assert_learned(result: dict) -> None:
    losses = result["losses"]
    assert result["steps_done"] == STEPS and len(losses) == STEPS
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def _hf_logits(folder: Path, tokens: torch.Tensor, adapter: Path | None = None) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).cuda().eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).eval()
    with torch.no_grad():
        logits = model(tokens).logits
    del model
    torch.cuda.empty_cache()
    return logits


def _megatron_logits(iteration: Path, tokens: torch.Tensor) -> torch.Tensor:
    """The checkpointed Megatron model (local SDPA spec) in fp32 on the GPU."""
    from primus_bridge.engine.megatron.runtime import prepare_megatron

    prepare_megatron()  # before any megatron.bridge import: TE placeholders where TE is absent
    from megatron.bridge.training.checkpointing import _load_model_weights_from_checkpoint

    from primus_bridge.engine.megatron.checkpoint_export import _single_rank_model
    from primus_bridge.engine.megatron.process_group import single_process_group

    with single_process_group():
        model = _single_rank_model(iteration, "local")
        _load_model_weights_from_checkpoint(str(iteration), model)
        module = model[0]
        while hasattr(module, "module"):
            module = module.module
        module = module.float().cuda().eval()
        positions = torch.arange(tokens.shape[1], device="cuda")[None].expand(tokens.shape[0], -1)
        with torch.no_grad():
            logits = module(input_ids=tokens, position_ids=positions, attention_mask=None)
    del model, module
    torch.cuda.empty_cache()
    return logits


def _probe_tokens(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 192), generator=torch.Generator().manual_seed(7)).cuda()


def _sft_values(llama: Path, work: Path) -> dict:
    values = _base_values(llama, work, "sft") | {
        "convert_from_hf": True, "convert_to_hf": True, "hf_save_path": str(work / "sft-hf")}
    values["training"] |= {"lr": 1.0e-4, "min_lr": 1.0e-5}
    values["data"] |= {"data_path": "examples/data/alpaca_sample.jsonl", "dataset_format": "alpaca",
                       "prompt_template": "alpaca"}
    return values


def _lora_values(llama: Path, work: Path) -> dict:
    """LoRA on every projection; starts from the SFT run's HF import (or its own, when run side by side)."""
    values = _base_values(llama, work, "lora") | {
        "convert_to_hf": True, "hf_save_path": str(work / "lora-hf"),
        "lora": {"use_lora": True, "lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.05,
                 "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                         "down_proj"]}}
    if CONCURRENT:
        values["convert_from_hf"] = True
    else:
        values["model"] = {"load": str(work / "sft.hf_import")}
    values["training"] |= {"lr": 5.0e-4, "min_lr": 5.0e-5}
    values["checkpointing"] |= {"save_interval": STEPS, "save_lora_only": True}
    values["data"] |= {"data_path": "examples/data/sharegpt_sample.jsonl", "dataset_format": "sharegpt",
                       "chat_format": "chatml", "prompt_template": "chatml"}
    return values


@pytest.fixture(scope="module")
def side_by_side(llama, work, repo) -> dict:
    """With PRIMUS_GPU_CONCURRENT_RUNS=1: both runs launched together; {name: result or error text}."""
    if not CONCURRENT:
        return {}
    runs = [launch(work, repo, "sft", _sft_values(llama, work)), launch(work, repo, "lora", _lora_values(llama, work))]
    deadline, outcome = time.perf_counter() + RUN_TIMEOUT, {}
    for run in runs:
        try:
            outcome[run.name] = finish(run, repo, deadline - time.perf_counter())
        except AssertionError as err:
            outcome[run.name] = str(err)
    return outcome


def _run(name: str, values: dict, side_by_side: dict, work: Path, repo: Path) -> dict:
    if not CONCURRENT:
        return train(work, repo, name, values, RUN_TIMEOUT)
    outcome = side_by_side[name]
    assert isinstance(outcome, dict), outcome
    return outcome


def test_sft_finetune_and_export(llama, work, repo, side_by_side):
    result = _run("sft", _sft_values(llama, work), side_by_side, work, repo)
    RUNS["sft"] = result
    summary = _summary(result)
    record(repo, "sft", summary)
    _assert_learned(result)

    tokens = _probe_tokens(json.loads((llama / "config.json").read_text())["vocab_size"])
    exported = _hf_logits(work / "sft-hf", tokens)
    megatron = _megatron_logits(work / "sft" / f"iter_{STEPS:07d}", tokens)
    diff = (exported - megatron).abs().max().item()
    record(repo, "sft", summary | {"export_vs_megatron_max_abs_logit_diff_fp32": diff,
                                   "logit_abs_max": megatron.abs().max().item()})
    assert diff < 1e-3
    generation = json.loads((work / "sft-hf" / "generation_config.json").read_text())
    assert generation["eos_token_id"] == json.loads((llama / "config.json").read_text())["eos_token_id"]


def resume_copy(work: Path, step: int, run: str = "sft") -> Path:
    """The save folder of `run` as it stood after `step`, as `<run>-resume` (hard links: no extra disk)."""
    source, target = work / run, work / f"{run}-resume"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    shutil.copytree(source / f"iter_{step:07d}", target / f"iter_{step:07d}", copy_function=os.link)
    shutil.copy(source / f"iter_{step:07d}" / "train_state.pt", target / "latest_train_state.pt")
    (target / "latest_checkpointed_iteration.txt").write_text(f"{step}\n")
    return target


RESUME_LOSS_RTOL, RESUME_LOSS_ATOL = 0.005, 1e-7
"""How close each resumed step's loss must be to the uninterrupted run's. By step 40 this run has learnt the sample to
a loss of about 4e-4. On an H100 (2026-12-06) the resumed run's first step gave the uninterrupted loss bit for bit
and the later ones differed by up to 1.6%, which this bound (then 5%) let pass: the resume set Adam's step count
back to 0 (compat/optimizer_resume.py, fixed since), a larger first update. Eager and graphed runs of the same
steps give equal losses bit for bit on that GPU, so a right resume should too; the bound leaves room for
reductions whose order may vary."""


def test_resumed_run_repeats_the_uninterrupted_losses(llama, work, repo):
    if "sft" not in RUNS or SAVE_EVERY >= STEPS:
        pytest.skip("needs the SFT run with its step-40 checkpoint")
    resume_copy(work, SAVE_EVERY)
    values = _sft_values(llama, work) | {"convert_to_hf": False}
    values["checkpointing"] = {**values["checkpointing"], "save": str(work / "sft-resume")}
    result = train(work, repo, "sft-resume", values, RUN_TIMEOUT)
    expected = RUNS["sft"]["losses"][SAVE_EVERY:]
    got = result["losses"]
    diffs = [abs(a - b) for a, b in zip(got, expected)]
    record(repo, "resume", {"resumed_from_step": SAVE_EVERY, "losses_after_resume": got,
                            "uninterrupted_losses": expected, "max_abs_diff": max(diffs) if diffs else None,
                            "first_step": result["extra"]["first_step"], "wall_seconds": result["wall_seconds"]})
    assert result["extra"]["first_step"] == SAVE_EVERY and len(got) == STEPS - SAVE_EVERY
    assert all(diff <= RESUME_LOSS_RTOL * want + RESUME_LOSS_ATOL for diff, want in zip(diffs, expected)), diffs


def test_lora_finetune_and_export(llama, work, repo, side_by_side):
    result = _run("lora", _lora_values(llama, work), side_by_side, work, repo)
    RUNS["lora"] = result
    summary = _summary(result)
    record(repo, "lora", summary)
    _assert_learned(result)
    assert result["trainable_params"] < 0.05 * result["total_params"]

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(work / "lora-hf")
    generation = json.loads((work / "lora-hf" / "generation_config.json").read_text())
    eos = generation["eos_token_id"]
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])
    tokens = _probe_tokens(len(tokenizer))
    merged = _hf_logits(work / "lora-hf", tokens)
    with_adapter = _hf_logits(llama, tokens, adapter=work / "lora-hf" / "adapter")
    diff, scale = (merged - with_adapter).abs().max().item(), with_adapter.abs().max().item()
    record(repo, "lora", summary | {"merged_vs_peft_adapter_max_abs_logit_diff": diff, "logit_abs_max": scale})
    assert diff < 0.02 * scale, (diff, scale)  # merged weights are rounded to bf16; the adapter path is not


def test_chunked_head_loss_matches_the_full_head(llama, work, repo):
    """model.head_loss: chunked on the LoRA run's config (whose auto head is the full one: this vocabulary
    is under AUTO_MIN_VOCAB): the same losses, no more memory. The memory gain needs a large vocabulary
    (the h200 benchmark's Llama-3-8B case); here the head is too small to show one."""
    if "lora" not in RUNS:
        pytest.skip("the LoRA run did not finish")
    values = _lora_values(llama, work)
    values.pop("convert_to_hf"), values.pop("hf_save_path")
    values["checkpointing"] = {"save": None}
    values["model"] = values.get("model", {}) | {"head_loss": "chunked"}
    chunked = train(work, repo, "lora-chunked-head", values, RUN_TIMEOUT)
    full = RUNS["lora"]
    summary = _summary(chunked) | {"full_head_losses": full["losses"],
                                   "full_head_peak_memory_allocated": full["peak_memory_allocated"],
                                   "full_head_tokens_per_second": full.get("tokens_per_second")}
    record(repo, "lora_chunked_head", summary)
    assert chunked["extra"]["head_loss"] == "chunked"
    assert abs(chunked["losses"][0] - full["losses"][0]) < 0.01 * full["losses"][0]
    assert chunked["peak_memory_allocated"] <= full["peak_memory_allocated"]
    _assert_learned(chunked)


def test_lora_checkpoint_exports_through_the_cli(llama, work, repo):
    if "lora" not in RUNS:
        pytest.skip("the LoRA run did not finish")
    from safetensors.torch import load_file

    out = work / "lora-cli-hf"
    done = subprocess.run([sys.executable, "-m", "primus_bridge.convert", "--framework", "megatron_bridge",
                           "--load", str(work / "lora"), "--convert_to_hf", "--hf_save_path", str(out)],
                          cwd=repo, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-6000:]
    diffs = {}
    for name in ("model.safetensors", "adapter/adapter_model.safetensors"):
        paths = sorted((work / "lora-hf").glob(name.replace("model.safetensors", "*.safetensors")))
        in_run = {k: v for p in paths for k, v in load_file(p).items()}
        cli = {k: v for p in sorted(out.glob(name.replace("model.safetensors", "*.safetensors")))
               for k, v in load_file(p).items()}
        assert sorted(in_run) == sorted(cli)
        diffs[name] = max((in_run[k].float() - cli[k].float()).abs().max().item() for k in in_run)
    record(repo, "lora_cli_export", {"max_abs_weight_diff_vs_in_run_export": diffs})
    assert all(d < 1e-2 for d in diffs.values()), diffs


def _two_layer_model(llama: Path, trainable: bool, lora_dropout: float | None):
    from primus_bridge.config.sections.lora import LoraConfig
    from primus_bridge.engine.megatron.lora import build_peft
    from primus_bridge.engine.megatron.model import provider_from_hf

    provider = provider_from_hf(llama, "local")
    provider.num_layers, provider.bf16, provider.params_dtype = 2, True, torch.bfloat16
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    if lora_dropout is not None:
        model = build_peft(LoraConfig(use_lora=True, lora_dropout=lora_dropout, lora_target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))(model, training=True)
    elif not trainable:
        for name, param in model[0].named_parameters():
            # Only the embedding trains: gradients still flow back through every layer, as in LoRA.
            param.requires_grad_("word_embeddings" in name)
    return model[0].train()


def _step_ms(model, batch: dict, params, repeats: int = 10) -> float:
    def step():
        losses = model(input_ids=batch["tokens"], position_ids=batch["position_ids"], attention_mask=None,
                       labels=batch["labels"], packed_seq_params=params)
        losses.sum().backward()

    return device_ms(step, repeats)


def test_lora_overhead_breakdown(llama, repo):
    """Forward+backward of 2 layers on one 4096-token packed stream: full training vs frozen vs LoRA."""
    from primus_bridge.engine.megatron.runtime import prepare_megatron

    prepare_megatron()
    from megatron.bridge.training.utils.packed_seq_utils import get_packed_seq_params
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    from primus_bridge.engine.megatron.process_group import single_process_group

    vocab = json.loads((llama / "config.json").read_text())["vocab_size"]
    lengths = [300, 700, 120, 1100, 500, 900, 476]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    tokens = torch.randint(0, vocab, (1, 4096), device="cuda")
    batch = {"tokens": tokens, "labels": tokens.roll(-1, 1),
             "position_ids": torch.cat([torch.arange(n) for n in lengths])[None].cuda()}
    params = get_packed_seq_params({"cu_seqlens_q": cu, "cu_seqlens_kv": cu, "max_seqlen_q": max(lengths),
                                    "max_seqlen_kv": max(lengths)})
    timings = {}
    with single_process_group():
        model_parallel_cuda_manual_seed(0)
        for name, trainable, dropout in (("full", True, None), ("frozen", False, None),
                                         ("lora_dropout0", False, 0.0), ("lora_dropout0.05", False, 0.05)):
            model = _two_layer_model(llama, trainable, dropout)
            timings[name] = _step_ms(model, batch, params)
            del model
            torch.cuda.empty_cache()
    record(repo, "lora_overhead_2_layers_ms", timings)
    # A measurement, not a speed assertion: at 4,096 tokens the layers are host-bound on the H200
    # (full 17.5 ms, frozen 17.9 ms, LoRA 26.5 ms for 2 layers), so skipping weight gradients saves
    # nothing there; the benchmark suite's 1B LoRA vs SFT case compares whole steps.
    assert all(0 < value < 1000 for value in timings.values()), timings
