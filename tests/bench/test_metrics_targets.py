import pytest

from primus_bridge.bench.metrics import compute_metrics
from primus_bridge.bench.results import SystemRun


def test_metrics_from_known_step_times(sample_results):
    run = sample_results.run("lora-4k", "megatron")
    m = run.metrics
    assert m.timed_steps == 4
    assert m.step_time_mean_s == pytest.approx(2.0)
    assert m.tokens_per_s_per_gpu == pytest.approx(8 * 4096 / 2.0)
    assert m.model_tflops_per_gpu == pytest.approx(16384 * 33_491_517_440 / 1e12)
    assert m.mfu_measured == pytest.approx(m.model_tflops_per_gpu / 790.0)
    assert m.mfu_datasheet == pytest.approx(m.model_tflops_per_gpu / 989.4)
    assert (m.loss_first, m.loss_last) == (11.8, 10.6)


def test_per_gpu_throughput_divides_by_gpus(sample_results):
    case = sample_results.case_info("lora-4k")
    run = SystemRun(case="lora-4k", system="x", status="ok", gpus=8, step_times=[1.0, 1.0], losses=[1.0, 1.0])
    assert compute_metrics(run, case, 1, None, None).tokens_per_s_per_gpu == pytest.approx(case.tokens_per_step / 8)


def test_no_peak_gives_no_mfu(sample_results):
    case = sample_results.case_info("lora-4k")
    run = SystemRun(case="lora-4k", system="x", status="ok", step_times=[1.0, 1.0])
    m = compute_metrics(run, case, 1, 100.0, None)
    assert m.mfu_datasheet is None and m.mfu_measured is not None


def test_engine_tokens_per_step_must_match_the_case(sample_results):
    case = sample_results.case_info("lora-4k")
    run = SystemRun(case="lora-4k", system="x", status="ok", step_times=[1.0, 1.0], tokens_per_step=4096)
    with pytest.raises(ValueError, match="4096 tokens per step"):
        compute_metrics(run, case, 1, None, None)


def test_targets_met_not_met_and_not_measured(sample_results):
    by_title = {t.title: t for t in sample_results.targets}
    assert by_title["speed"].value == pytest.approx(1.5) and by_title["speed"].met is True
    assert by_title["memory"].value == pytest.approx(40 / 60) and by_title["memory"].met is True
    assert by_title["mfu 8k"].met is False
    assert by_title["hf 8k"].met is None and by_title["hf 8k"].value is None


def test_step_time_target_divides_mean_step_times(sample_results):
    step = {t.title: t for t in sample_results.targets}["step"]
    assert step.value == pytest.approx(2.0 / 3.0) and step.met is True


def test_a_report_bug_does_not_lose_the_runs(sample_results, tmp_path, caplog):
    """A target naming a metric the runs do not record (a past bug) is logged; results.json keeps every run."""
    from primus_bridge.bench.results import load_results
    from primus_bridge.bench.runner import RunOptions, publish
    from primus_bridge.bench.suites import Suite, Target
    from primus_bridge.bench.workspace import Workspace

    bad = Target("bad", "step_time_mean", ("lora-4k", "megatron"), "<=", 1.0)
    suite = Suite(name="h200", description="", device="gpu", systems=("megatron", "hf"), warmup_steps=1,
                  timed_steps=4, cases=(), peak_squares=(1024,), targets=(bad,))
    publish(sample_results, RunOptions(suite, tmp_path, Workspace(tmp_path / "work"), ()))
    assert [(r.case, r.system) for r in load_results(tmp_path).runs] == \
        [(r.case, r.system) for r in sample_results.runs]
    assert "writing the report failed" in caplog.text and "step_time_mean" in caplog.text


def test_several_baselines_compare_against_the_strongest(sample_results):
    """Speed against the fastest baseline, memory against the leanest; a baseline that did not run is left out."""
    from primus_bridge.bench.report.rows import comparisons
    from primus_bridge.bench.suites import Target
    from primus_bridge.bench.targets import evaluate
    from tests.bench.conftest import make_run

    sample_results.systems["hf-flex"] = "baseline with another kernel"
    four_k = sample_results.case_info("lora-4k")
    sample_results.put_run(make_run(four_k, "hf-flex", 2.5, 80.0, sample_results))  # faster than hf, more memory
    speed = Target("speed", "tokens_per_s_per_gpu", ("lora-4k", "megatron"), ">=", 1.3,
                   reference=("lora-4k", "hf", "hf-flex"))
    memory = Target("memory", "peak_memory_allocated", ("lora-4k", "megatron"), "<=", 0.8,
                    reference=("lora-4k", "hf", "hf-flex"))
    speed_result, memory_result = evaluate(speed, sample_results), evaluate(memory, sample_results)
    assert speed_result.value == pytest.approx(2.5 / 2.0) and speed_result.met is False
    assert "same of hf-flex on lora-4k (the strongest baseline of hf, hf-flex)" in speed_result.description
    assert memory_result.value == pytest.approx(40 / 60) and memory_result.met is True
    assert "same of hf on lora-4k" in memory_result.description
    eight_k = Target("speed", "tokens_per_s_per_gpu", ("lora-8k", "megatron"), ">=", 1.3,
                     reference=("lora-8k", "hf", "hf-flex"))
    assert evaluate(eight_k, sample_results).met is None  # hf failed, hf-flex never ran
    assert [(c.case, c.baseline) for c in comparisons(sample_results)] == [  # hf-flex never ran on lora-8k
        ("lora-4k", "hf"), ("lora-4k", "hf-flex"), ("lora-8k", "hf")]
