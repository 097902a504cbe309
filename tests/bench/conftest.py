"""A hand-made two-system result (one case both ran, one where the baseline failed) for the writer tests."""

import pytest

from primus_bridge.bench.environment import DeviceInfo, Environment
from primus_bridge.bench.metrics import compute_metrics
from primus_bridge.bench.peak import MatmulPeak
from primus_bridge.bench.results import BenchCall, BenchResults, CaseInfo, SystemRun
from primus_bridge.bench.suites import Target
from primus_bridge.bench.targets import evaluate
from primus_bridge.models.flops import FORMULA_TEXT

GIB = 1024**3


def make_case(name: str, tokens_per_step: int = 8 * 4096) -> CaseInfo:
    return CaseInfo(name=name, shape="llama3-8b", mode="lora", seq_length=4096, micro_batch_size=1,
                    global_batch_size=tokens_per_step // 4096, lora_rank=16, lora_targets=["q_proj"],
                    tokens_per_step=tokens_per_step, flops_per_token=33_491_517_440, data_fingerprint="ab" * 32,
                    data_rows=120)


def make_run(case: CaseInfo, system: str, step_s: float, memory_gib: float, results: BenchResults) -> SystemRun:
    run = SystemRun(case=case.name, system=system, status="ok", wall_s=60.0, step_times=[9.0] + [step_s] * 4,
                    losses=[11.8, 11.5, 11.2, 10.9, 10.6], tokens_per_step=case.tokens_per_step,
                    trainable_params=41_943_040, total_params=8_030_000_000,
                    peak_memory_allocated=int(memory_gib * GIB), peak_memory_reserved=int((memory_gib + 2) * GIB),
                    engine_details={"attn_implementation": "sdpa", "eval_losses": {}} if system == "hf" else {})
    metrics = compute_metrics(run, case, results.warmup_steps, results.measured_peak.tflops_median,
                              results.datasheet_peak_tflops)
    return run.model_copy(update={"metrics": metrics})


TARGETS = (
    Target("speed", "tokens_per_s_per_gpu", ("lora-4k", "megatron"), ">=", 1.3, reference=("lora-4k", "hf")),
    Target("memory", "peak_memory_allocated", ("lora-4k", "megatron"), "<=", 0.8, reference=("lora-4k", "hf")),
    Target("mfu 8k", "mfu_measured", ("lora-8k", "megatron"), ">=", 0.55),
    Target("hf 8k", "mfu_measured", ("lora-8k", "hf"), ">=", 0.1),
    Target("step", "step_time_mean_s", ("lora-4k", "megatron"), "<=", 0.85, reference=("lora-4k", "hf")),
)


@pytest.fixture
def sample_results() -> BenchResults:
    device = DeviceInfo(kind="cuda", name="NVIDIA H200", count=1, gpu_type="h200", memory_bytes=141 * 10**9,
                        capability="9.0")
    environment = Environment(device=device, driver="nvidia 580.159.04", torch_cuda="13.0", torch_hip=None,
                              python="3.12.3", platform="Linux", cpu_count=16,
                              libraries={"torch": "2.11.0", "transformer-engine": None})
    results = BenchResults(
        suite="h200", description="test suite", started="2026-11-29T10:00:00+00:00",
        updated="2026-11-29T10:30:00+00:00", precision="bf16", warmup_steps=1, timed_steps=4,
        systems={"megatron": "ours", "hf": "baseline"}, environment=environment,
        calls=[BenchCall(started="2026-11-29T10:00:00+00:00", device="NVIDIA H200", revision="abc123", dirty=False,
                         measured_peak=MatmulPeak("cuda:0", "bf16", 8192, 30, 790.0, 800.0))],
        datasheet_peak_tflops=989.4,
        flops_formula=FORMULA_TEXT,
    )
    four_k, eight_k = make_case("lora-4k"), make_case("lora-8k")
    results.cases = [four_k, eight_k]
    results.put_run(make_run(four_k, "megatron", 2.0, 40.0, results))
    results.put_run(make_run(four_k, "hf", 3.0, 60.0, results))
    results.put_run(make_run(eight_k, "megatron", 3.0, 50.0, results))
    results.put_run(SystemRun(case="lora-8k", system="hf", status="failed", reason="exit code 1:\nCUDA out of memory"))
    results.targets = [evaluate(target, results) for target in TARGETS]
    return results
