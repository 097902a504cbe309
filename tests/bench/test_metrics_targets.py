import pytest

from primus_bridge.bench.metrics import compute_metrics
from primus_bridge.bench.results import SystemRun
from primus_bridge.bench.targets import evaluate

from tests.bench.conftest import GIB, TARGETS


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


def _with_fp8_runs(results, fp8_step_s: float):
    """The targets' subjects, megatron-graph and megatron-fp8-graph, on the h100 suite's 8B LoRA case (megatron-graph
    at 2.0 s a step), an eager megatron run slower than both, and hf-liger."""
    from primus_bridge.bench.suites import SYSTEMS, get_suite
    from tests.bench.conftest import make_case, make_run

    results.systems = {name: SYSTEMS[name].description for name in get_suite("h100").systems}
    case = make_case("llama3-8b-lora-s4096")
    results.cases.append(case)
    results.put_run(make_run(case, "megatron", 2.4, 39.0, results))
    results.put_run(make_run(case, "megatron-graph", 2.0, 40.0, results))
    results.put_run(make_run(case, "megatron-fp8-graph", fp8_step_s, 30.0, results))
    results.put_run(make_run(case, "hf-liger", 2.5, 45.0, results))
    return results


def _gpu_target(title: str):
    from primus_bridge.bench.suites import GPU_TARGETS

    return {t.title: t for t in GPU_TARGETS}[title]


@pytest.mark.parametrize("fp8_step_s,ratio,met", [(1.4, 2.0 / 1.4, True), (1.6, 2.0 / 1.6, False)])
def test_fp8_target_divides_fp8_tokens_per_s_by_bf16s(sample_results, fp8_step_s, ratio, met):
    results = _with_fp8_runs(sample_results, fp8_step_s)
    result = evaluate(_gpu_target("8B LoRA FP8 base tokens/s vs bf16"), results)
    assert result.value == pytest.approx(ratio) and result.met is met
    assert result.description == ("tokens_per_s_per_gpu of megatron-fp8-graph on llama3-8b-lora-s4096 / same of "
                                  "megatron-graph on llama3-8b-lora-s4096 >= 1.35")


def test_the_targets_and_the_baseline_tables_take_the_graphed_engine_where_it_ran(sample_results):
    """The HF target's subject is megatron-graph (the FP8 runs, faster still, are neither its subject nor a
    baseline); the report's baseline table takes it too where it ran, the eager megatron elsewhere, and each
    variant is compared with the system it varies."""
    from primus_bridge.bench.report.markdown import markdown_text
    from primus_bridge.bench.report.rows import comparisons, variant_comparisons

    results = _with_fp8_runs(sample_results, 1.0)  # faster than every other system: must not become a baseline
    hf = evaluate(_gpu_target("8B LoRA tokens/s vs the strongest HF + PEFT"), results)
    assert hf.value == pytest.approx(2.5 / 2.0) and "megatron-graph on" in hf.description
    assert "same of hf-liger" in hf.description
    pairs = {(c.case, c.subject, c.baseline): c for c in comparisons(results)}
    assert pairs[("llama3-8b-lora-s4096", "megatron-graph", "hf-liger")].speed_ratio == pytest.approx(2.5 / 2.0)
    assert {subject for case, subject, _ in pairs if case != "llama3-8b-lora-s4096"} == {"megatron"}
    assert not {p for p in pairs if "megatron-fp8-graph" in p}
    text = markdown_text(results)
    assert "## megatron / megatron-graph vs each baseline (same batches)" in text
    assert "| llama3-8b-lora-s4096 | megatron-graph | hf-liger | 1.25x | 0.89x |" in text
    (variant,) = variant_comparisons(results)  # megatron-fp8-graph's own base, megatron-fp8, did not run
    assert (variant.case, variant.subject, variant.baseline) == ("llama3-8b-lora-s4096", "megatron-graph", "megatron")
    assert variant.speed_ratio == pytest.approx(2.4 / 2.0) and variant.memory_ratio == pytest.approx(40 / 39)


def test_fp8_target_is_not_measured_when_the_fp8_run_was_skipped(sample_results):
    results = _with_fp8_runs(sample_results, 1.4)
    results.put_run(SystemRun(case="llama3-8b-lora-s4096", system="megatron-fp8-graph", status="skipped",
                              reason="needs FP8 matmuls: no FP8 tensor cores"))
    result = evaluate(_gpu_target("8B LoRA FP8 base tokens/s vs bf16"), results)
    assert result.value is None and result.met is None


# -- loss curves --------------------------------------------------------------------------------------------------


def test_loss_curve_gap_of_identical_and_offset_curves():
    from primus_bridge.bench.metrics import loss_curve_gap

    base = [12.0 - 0.01 * step for step in range(22)]
    same = loss_curve_gap(base, base, 3, 10)
    assert (same.max_window_gap, same.max_step_gap, same.steps, same.window_steps) == (0.0, 0.0, 20, 10)
    higher = loss_curve_gap([loss * 1.02 for loss in base], base, 3, 10)
    assert higher.max_window_gap == pytest.approx(0.02) and higher.max_step_gap == pytest.approx(0.02)


def test_loss_curve_gap_averages_a_noisy_step_within_its_window_and_reports_it():
    """One step 5% off moves its window's mean by 0.5%: the window check passes, the per-step maximum names it."""
    from primus_bridge.bench.metrics import loss_curve_gap

    base = [10.0] * 20
    noisy = list(base)
    noisy[13] = 10.5  # step 14
    gap = loss_curve_gap(noisy, base, 1, 10)
    assert gap.max_window_gap == pytest.approx(0.005) and gap.worst_window_first_step == 11
    assert gap.max_step_gap == pytest.approx(0.05) and gap.worst_step == 14
    assert gap.describe() == ("20 steps, 2 windows; largest window gap 0.500% (the window from step 11); largest "
                              "per-step gap 5.000% (step 14)")


def test_loss_curve_gap_refuses_other_steps_and_makes_non_finite_losses_infinite():
    import math

    from primus_bridge.bench.metrics import loss_curve_gap

    with pytest.raises(ValueError, match="recorded 20 and 19 losses"):
        loss_curve_gap([1.0] * 20, [1.0] * 19, 1, 10)
    with pytest.raises(ValueError, match="no losses from step 21"):
        loss_curve_gap([1.0] * 20, [1.0] * 20, 21, 10)
    gap = loss_curve_gap([1.0] * 5 + [math.nan] + [1.0] * 4, [1.0] * 10, 1, 10)
    assert gap.max_window_gap == math.inf and gap.worst_step == 6


def _loss_results(sample_results, fp8_losses: list[float], bf16_losses: list[float]):
    from primus_bridge.bench.suites import FP8_LOSS_CASE, SYSTEMS, get_suite
    from tests.bench.conftest import make_case

    suite = get_suite("fp8-loss")
    results = sample_results.model_copy(update={
        "suite": suite.name, "warmup_steps": suite.warmup_steps, "timed_steps": suite.timed_steps,
        "systems": {name: SYSTEMS[name].description for name in suite.systems}, "runs": [], "targets": []})
    results.cases = [make_case(FP8_LOSS_CASE, tokens_per_step=4096)]
    for system, losses in (("megatron", bf16_losses), ("megatron-fp8", fp8_losses)):
        results.put_run(SystemRun(case=FP8_LOSS_CASE, system=system, status="ok", step_times=[0.4] * len(losses),
                                  losses=losses, tokens_per_step=4096))
    return results, suite.targets[0]


def _curve(steps: int = 202) -> list[float]:
    """A falling loss with step-to-step noise (the batches differ from step to step)."""
    return [12.5 - 3.0 * step / steps + 0.3 * ((step * 7919) % 13 - 6) / 6 for step in range(steps)]


def test_loss_curve_target_met_when_every_window_mean_is_within_1_percent(sample_results):
    bf16 = _curve()
    fp8 = [loss * (1.004 if step % 2 else 0.997) + (0.5 if step == 100 else 0.0) for step, loss in enumerate(bf16)]
    results, target = _loss_results(sample_results, fp8, bf16)
    result = evaluate(target, results)
    assert result.met is True and 0.004 < result.value < 0.01
    assert "largest per-step gap" in result.detail and "(step 101)" in result.detail  # the spike: > 4% alone
    assert result.description == (
        "losses of megatron-fp8 and megatron on llama3-8b-lora-s4096-gb1 (same weights, same batches), timed steps "
        "(after the warm-up) in consecutive windows of 10: max over windows of |mean loss of megatron-fp8 - mean loss "
        "of megatron| / mean loss of megatron <= 0.01")
    assert "200 steps, 20 windows" in result.detail


def test_loss_curve_target_not_met_when_one_window_drifts(sample_results):
    bf16 = _curve()
    fp8 = [loss * (1.02 if 153 <= step + 1 <= 162 else 1.0) for step, loss in enumerate(bf16)]  # steps 153-162
    results, target = _loss_results(sample_results, fp8, bf16)
    result = evaluate(target, results)
    assert result.met is False and result.value == pytest.approx(0.02)
    assert "(the window from step 153)" in result.detail  # windows start after the 2 warm-up steps: 3, 13, ...


def test_loss_curve_target_not_measured_without_both_curves(sample_results):
    results, target = _loss_results(sample_results, _curve(150), _curve())
    result = evaluate(target, results)
    assert result.met is None and result.value is None
    assert result.detail == "not comparable: the runs recorded 150 and 202 losses: not the same steps"
    results.put_run(SystemRun(case=target.subject[0], system="megatron-fp8", status="timeout", reason="stopped"))
    result = evaluate(target, results)
    assert result.met is None and result.detail is None


def _with_plan(results, activations_gib: float):
    """The megatron run of lora-4k as if its worker had recorded the planner's breakdown."""
    run = results.run("lora-4k", "megatron")
    plan = {"weights": 15.0 * GIB, "lora": 0.7 * GIB, "activations": activations_gib * GIB, "logits": 1.3 * GIB,
            "framework_overhead": 4.0 * GIB}
    results.put_run(run.model_copy(update={"planned_memory": plan}))
    return results


def test_a_memory_target_says_what_its_allowance_leaves_for_activations(sample_results):
    """hf peaks at 60 GiB, so <= 0.8x allows 48; weights 15 and adapters 0.7 leave 32.3 for activations and logits."""
    target = next(t for t in TARGETS if t.title == "memory")
    detail = evaluate(target, _with_plan(sample_results, 20.0)).detail
    assert detail == ("0.8x hf's peak allows 48.0 GiB; the planned weights and trainable state take 15.7, leaving "
                      "32.3 GiB for activations and logits, which this run plans at 21.3 GiB")
    speed = next(t for t in TARGETS if t.title == "speed")
    assert evaluate(speed, sample_results).detail is None  # only memory targets...
    without_plan = sample_results.run("lora-4k", "megatron").model_copy(update={"planned_memory": {}})
    sample_results.put_run(without_plan)
    assert evaluate(target, sample_results).detail is None  # ...and only where the run recorded a plan
