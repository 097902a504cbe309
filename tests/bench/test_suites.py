"""Every suite's cases are well-formed and build a valid config for every system; targets point at real runs."""

from pathlib import Path

import pytest

from primus_bridge.config import ConfigError
from primus_bridge.bench.shapes import SHAPES, get_shape
from primus_bridge.bench.suites import SUITES, SYSTEMS, get_suite
from primus_bridge.bench.workspace import Workspace, build_config, case_values, rows_needed

CASES = [(suite, case) for suite in SUITES.values() for case in suite.cases]


def _config_value(cfg, dotted: str):
    for name in dotted.split("."):
        cfg = getattr(cfg, name)
    return cfg


@pytest.mark.parametrize("suite,case", CASES, ids=[f"{s.name}:{c.name}" for s, c in CASES])
def test_case_builds_a_valid_config_for_every_system(suite, case, tmp_path):
    assert case.shape in SHAPES or case.shape == "tiny"
    assert case.global_batch_size % case.micro_batch_size == 0
    for system in suite.systems:
        values = case_values(case, suite, system, tmp_path / "model", tmp_path / "data.jsonl", Workspace(tmp_path))
        if case.mode not in SYSTEMS[system].applies_to:
            with pytest.raises(ConfigError, match="fp8_frozen_base: needs LoRA"):  # why it is not applicable
                build_config(values, case, suite.gpus)
            continue
        cfg = build_config(values, case, suite.gpus)
        assert cfg.engine == SYSTEMS[system].engine
        for dotted, value in SYSTEMS[system].settings:
            assert _config_value(cfg, dotted) == value, (system, dotted)
        assert cfg.model.attn_implementation == dict(SYSTEMS[system].settings).get("model.attn_implementation", "auto")
        settings = dict(SYSTEMS[system].settings)
        assert cfg.precision.fp8_frozen_base == settings.get("precision.fp8_frozen_base", False)
        assert cfg.model.cuda_graph == settings.get("model.cuda_graph", "none")
        assert cfg.mode == case.mode
        assert cfg.data.seq_length == case.seq_length
        assert cfg.training.train_iters == suite.warmup_steps + suite.timed_steps
        assert cfg.checkpointing.save is None


@pytest.mark.parametrize("suite", SUITES.values(), ids=list(SUITES))
def test_targets_refer_to_cases_and_systems_of_their_suite(suite):
    names = {case.name for case in suite.cases}
    for target in suite.targets:
        for case, *systems in filter(None, (target.subject, target.reference)):
            assert case in names and systems and set(systems) <= set(suite.systems)


@pytest.mark.parametrize("card", ["h100", "h200"])
def test_one_gpu_suites_cover_the_cases_and_every_hf_baseline(card):
    suite = get_suite(card)
    lora_8b = {c.seq_length for c in suite.cases if c.shape == "llama3-8b" and c.mode == "lora"}
    assert lora_8b == {2048, 4096, 8192}
    assert {c.shape for c in suite.cases if c.mode == "sft"} == {"llama3.2-1b", "llama3.2-3b"}
    assert all(c.seq_length == 4096 for c in suite.cases if c.mode == "sft")
    assert set(suite.systems) == {"megatron", "megatron-fp8", "megatron-graph", "megatron-fp8-graph", "hf", "hf-flex",
                                  "hf-liger"}
    assert dict(SYSTEMS["hf-liger"].settings) == {"model.attn_implementation": "flex_attention",
                                                  "model.liger_kernel": True}
    assert all(set(c.lora_targets) == set(SHAPES["llama3-8b"].linear_dims()) for c in suite.cases)


def test_h200_runs_fit_in_eleven_device_calls():
    """Each run (case x system) within one 9-minute call and its timeout, the whole suite within eleven."""
    suite = get_suite("h200")
    assert all(case.expected_for(system) < min(case.timeout_s, 540) for case in suite.cases for system in suite.systems)
    assert sum(case.expected_total_s for case in suite.cases) <= 11 * 540
    assert rows_needed(suite.cases[0], suite) == 16 * 13


def test_cpu_smoke_is_five_steps_of_the_tiny_model():
    suite = get_suite("cpu-smoke")
    assert suite.warmup_steps + suite.timed_steps == 5
    assert {c.shape for c in suite.cases} == {"tiny"}
    assert suite.gpus == 0


def test_unknown_suite_and_case_name_the_known_ones():
    with pytest.raises(KeyError, match="cpu-smoke"):
        get_suite("nope")
    with pytest.raises(KeyError, match="tiny-sft-s256"):
        get_suite("cpu-smoke").case("nope")


def test_every_target_names_a_metric_the_runs_record():
    from typing import get_args

    from primus_bridge.bench.results import RunMetrics
    from primus_bridge.bench.suites import LOSS_CURVE_METRICS, SUITES, Target

    recorded = set(RunMetrics.model_fields) | {"peak_memory_allocated"} | set(LOSS_CURVE_METRICS)
    assert set(get_args(Target.__annotations__["metric"])) <= recorded
    for suite in SUITES.values():
        for target in suite.targets:
            assert target.metric in recorded, (suite.name, target.title, target.metric)


def test_profiling_takes_the_last_warm_up_step_and_passes_the_config_checks(tmp_path):
    from primus_bridge.bench.runner import profile_values
    from primus_bridge.bench.suites import get_suite
    from primus_bridge.bench.workspace import Workspace, build_config, case_values

    for name in ("h200", "cpu-smoke"):
        suite = get_suite(name)
        case = suite.cases[0]
        values = case_values(case, suite, "hf", tmp_path / "model", tmp_path / "data.jsonl", Workspace(tmp_path))
        values["profiling"] = profile_values(suite, tmp_path / "run")
        cfg = build_config(values, case, suite.gpus)
        assert cfg.profiling.start_step == cfg.profiling.end_step == suite.warmup_steps
        assert not cfg.profiling.trace and cfg.profiling.record_shapes
        assert suite.warmup_steps >= 2, "step 1 compiles and allocates: profile a later warm-up step"


def test_the_profile_tables_are_copied_into_the_report(tmp_path):
    from primus_bridge.bench.runner import keep_profile_tables

    assert keep_profile_tables(tmp_path / "run", tmp_path / "report", "c-hf") == []
    (tmp_path / "run" / "profile").mkdir(parents=True)
    (tmp_path / "run" / "profile" / "ops-rank0.txt").write_text("aten::mm 1 ms\n")
    assert keep_profile_tables(tmp_path / "run", tmp_path / "report", "c-hf") == [
        tmp_path / "report" / "profiles" / "c-hf-ops.txt"]
    (tmp_path / "run" / "profile" / "gaps-rank0.txt").write_text("device busy 50%\n")
    ops, gaps = keep_profile_tables(tmp_path / "run", tmp_path / "report", "c-hf")
    assert ops.read_text() == "aten::mm 1 ms\n" and gaps.read_text() == "device busy 50%\n"
    assert gaps == tmp_path / "report" / "profiles" / "c-hf-gaps.txt"


def test_systems_flag_picks_systems_of_the_suite_and_names_the_known_ones():
    from primus_bridge.bench.cli import selected_systems
    from primus_bridge.bench.runner import RunOptions, pending_systems
    from primus_bridge.bench.results import BenchResults

    suite = get_suite("h200")
    assert selected_systems(suite, None) is None
    assert selected_systems(suite, "hf-liger, hf-flex") == ("hf-liger", "hf-flex")
    known = "megatron, megatron-fp8, megatron-graph, megatron-fp8-graph, hf, hf-flex, hf-liger"
    with pytest.raises(KeyError, match=f"no system hf-fast; systems: {known}"):
        selected_systems(suite, "hf-fast")
    options = RunOptions(suite, Path("unused"), Workspace(Path("unused")), suite.cases, systems=("hf-liger", "hf-flex"))
    empty = BenchResults.model_construct(runs=[])
    assert pending_systems(empty, suite.cases[0], options) == ["hf-liger", "hf-flex"]  # in the order given


def test_unknown_shape_names_the_known_ones():
    with pytest.raises(KeyError, match="llama3-8b"):
        get_shape("llama-9b")


def test_system_settings_override_the_case_config_by_section(tmp_path):
    """One mechanism for every section: model.* for the HF variants, precision.* for the FP8 frozen base."""
    from primus_bridge.bench.workspace import with_settings

    values = {"model": {"tokenizer": "t"}, "precision": {"bf16": True}}
    assert with_settings(values, (("model.attn_implementation", "flex_attention"), ("precision.fp8_frozen_base", True),
                                  ("profiling.enabled", False))) == {
        "model": {"tokenizer": "t", "attn_implementation": "flex_attention"},
        "precision": {"bf16": True, "fp8_frozen_base": True}, "profiling": {"enabled": False}}
    suite = get_suite("h100")
    case = suite.case("llama3-8b-lora-s4096")
    fp8 = case_values(case, suite, "megatron-fp8", tmp_path / "m", tmp_path / "d.jsonl", Workspace(tmp_path))
    plain = case_values(case, suite, "megatron", tmp_path / "m", tmp_path / "d.jsonl", Workspace(tmp_path))
    assert fp8["precision"] == {"bf16": True, "fp8_frozen_base": True}
    assert {**fp8, "precision": plain["precision"]} == plain  # nothing else differs: same data, weights, batches


def test_expected_times_are_keyed_by_system_and_none_where_a_system_does_not_apply():
    from primus_bridge.bench.suites import _cases

    (sft, lora) = _cases(("megatron", "megatron-fp8", "hf"), [
        ("a", "tiny", "sft", 256, 1, 1, (10, None, 30), 60), ("b", "tiny", "lora", 256, 1, 1, (10, 20, 30), 60)])
    assert dict(sft.expected_s) == {"megatron": 10, "hf": 30} and sft.expected_total_s == 40
    assert dict(lora.expected_s) == {"megatron": 10, "megatron-fp8": 20, "hf": 30}
    with pytest.raises(ValueError, match="2 expected times for the 3 systems"):
        _cases(("megatron", "megatron-fp8", "hf"), [("a", "tiny", "lora", 256, 1, 1, (10, 20), 60)])
    with pytest.raises(ValueError, match="megatron-fp8 on a sft case needs None"):
        _cases(("megatron", "megatron-fp8"), [("a", "tiny", "sft", 256, 1, 1, (10, 20), 60)])
    with pytest.raises(ValueError, match="megatron-fp8 on a lora case needs an expected time"):
        _cases(("megatron", "megatron-fp8"), [("a", "tiny", "lora", 256, 1, 1, (10, None), 60)])


@pytest.mark.parametrize("card", ["h100", "h200"])
def test_fp8_system_runs_the_lora_cases_within_megatrons_times_and_has_its_target(card):
    suite = get_suite(card)
    assert suite.systems[:2] == ("megatron", "megatron-fp8")
    for case in suite.cases:
        expected = dict(case.expected_s)
        assert ("megatron-fp8" in expected) == (case.mode == "lora")
        assert expected.get("megatron-fp8", 0) <= expected["megatron"]  # after megatron in the order: import paid
    fp8 = {t.title: t for t in suite.targets}["8B LoRA FP8 base tokens/s vs bf16"]
    assert (fp8.metric, fp8.subject, fp8.op, fp8.threshold, fp8.reference) == (
        "tokens_per_s_per_gpu", ("llama3-8b-lora-s4096", "megatron-fp8-graph"), ">=", 1.35,
        ("llama3-8b-lora-s4096", "megatron-graph"))
    hf = {t.title: t for t in suite.targets}["8B LoRA tokens/s vs the strongest HF + PEFT"]
    assert hf.subject[1] == "megatron-graph" and hf.reference[1:] == ("hf", "hf-flex", "hf-liger")
    assert {t.subject[1] for t in suite.targets} <= set(suite.systems), "every target's subject runs in the suite"
    assert "megatron-fp8" not in get_suite("cpu-smoke").systems


def test_fp8_loss_suite_is_200_steps_of_both_megatron_systems_each_within_one_device_call():
    suite = get_suite("fp8-loss")
    (case,) = suite.cases
    assert suite.systems == ("megatron", "megatron-fp8") and suite.gpus == 1 and suite.device == "gpu"
    assert suite.timed_steps == 200 and 0 <= suite.warmup_steps <= 3
    assert (case.shape, case.mode, case.seq_length, case.micro_batch_size, case.global_batch_size) == (
        "llama3-8b", "lora", 4096, 1, 1)
    assert case.lora_spec() == get_suite("h100").case("llama3-8b-lora-s4096").lora_spec()
    probe_and_model_s = 90  # the device probe (one 4096 square) and building the random-weight 8B checkpoint
    assert all(case.expected_for(system) + probe_and_model_s <= 540 for system in suite.systems)  # resumable
    assert all(case.expected_for(system) <= case.timeout_s for system in suite.systems)
    (loss,) = suite.targets
    assert (loss.metric, loss.subject, loss.reference, loss.op, loss.threshold, loss.window_steps) == (
        "loss_window_gap", (case.name, "megatron-fp8"), (case.name, "megatron"), "<=", 0.01, 10)
    assert suite.timed_steps % loss.window_steps == 0
    assert suite.data_source == "text-process", "a repeated sample is memorised: its near-zero losses are noise"


def test_a_loss_curve_target_takes_exactly_one_reference_run():
    from primus_bridge.bench.suites import Target

    with pytest.raises(ValueError, match="exactly one reference run"):
        Target("t", "loss_window_gap", ("c", "megatron-fp8"), "<=", 0.01, reference=("c", "megatron", "hf"))
    with pytest.raises(ValueError, match="exactly one reference run"):
        Target("t", "loss_window_gap", ("c", "megatron-fp8"), "<=", 0.01)


def _device(problem: str | None):
    from primus_bridge.bench.environment import DeviceInfo

    return DeviceInfo(kind="cuda", name="GPU", count=1, capability="8.0" if problem else "9.0",
                      fp8_matmul_problem=problem)


def test_fp8_system_is_not_applicable_to_sft_and_skipped_without_fp8_matmuls():
    from primus_bridge.bench.runner import unrunnable

    suite = get_suite("h100")
    sft, lora = suite.case("llama3.2-1b-sft-s4096"), suite.case("llama3-8b-lora-s4096")
    not_applicable = unrunnable(sft, "megatron-fp8", suite, _device(None))
    assert (not_applicable.status, not_applicable.reason) == (
        "not_applicable", "megatron-fp8 applies to lora cases only, not sft")
    no_fp8 = "NVIDIA A100 (compute capability 8.0) has no FP8 tensor cores"
    skipped = unrunnable(lora, "megatron-fp8", suite, _device(no_fp8))
    assert (skipped.status, skipped.reason) == ("skipped", f"needs FP8 matmuls: {no_fp8}")
    assert unrunnable(lora, "megatron-fp8", suite, _device(None)) is None
    assert unrunnable(lora, "megatron", suite, _device(no_fp8)) is None  # bf16 needs no FP8
    assert unrunnable(sft, "megatron", suite, _device(None)) is None
    cpu = get_suite("cpu-smoke")
    assert unrunnable(cpu.cases[0], "megatron", cpu, _device(None)).status == "skipped"


def test_a_case_whose_systems_all_cannot_run_records_them_and_prepares_nothing(sample_results, tmp_path):
    from primus_bridge.bench.results import load_results
    from primus_bridge.bench.runner import RunOptions, pending_systems, run_case

    suite = get_suite("h100")
    sft = suite.case("llama3.2-1b-sft-s4096")
    sample_results.systems = {name: SYSTEMS[name].description for name in suite.systems}  # as a run of the suite
    options = RunOptions(suite, tmp_path / "report", Workspace(tmp_path / "work"), (sft,), resume=True)
    assert run_case(sft, ["megatron-fp8"], sample_results, options, lambda: float("inf")) is True
    run = load_results(tmp_path / "report").run(sft.name, "megatron-fp8")
    assert run.status == "not_applicable" and run.step_times == []
    assert not (tmp_path / "work" / "models").exists(), "no model was built for a case nothing runs"
    assert "megatron-fp8" not in pending_systems(sample_results, sft, options)  # resume leaves it recorded
    report = (tmp_path / "report" / "report.md").read_text()
    assert "- llama3.2-1b-sft-s4096 / megatron-fp8: not applicable (megatron-fp8 applies to lora cases only" in report


def test_the_worker_records_the_planners_parts_for_a_megatron_run_on_a_gpu(tmp_path, monkeypatch):
    """On an H100 (the probes of the GPU answered as one would), the 8B LoRA s4096 case's megatron-graph config gets
    the planner's breakdown, with the chunked head's one chunk of logits; an hf run, or a machine without a GPU,
    gets none."""
    from primus_bridge.bench.worker import planned_memory
    from primus_bridge.planner import gate
    from primus_bridge.planner.memory import MemoryBreakdown

    suite = get_suite("h100")
    case = next(c for c in suite.cases if c.name == "llama3-8b-lora-s4096")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    SHAPES[case.shape].hf_config().to_json_file(model_dir / "config.json")

    def config(system: str):
        values = case_values(case, suite, system, model_dir, tmp_path / "data.jsonl", Workspace(tmp_path))
        return build_config(values, case, suite.gpus)

    assert planned_memory(config("megatron-graph")) == {}  # this machine has no GPU
    monkeypatch.setattr(gate, "visible_gpu_count", lambda: 1)
    monkeypatch.setattr(gate, "detect_gpu_type", lambda: "h100")
    parts = planned_memory(config("megatron-graph"))
    plan = MemoryBreakdown(**parts)
    assert plan.weights == pytest.approx(8.03e9 * 2, rel=0.01)  # the frozen bf16 base
    assert plan.gradients == plan.optimizer_states == 0 and 0 < plan.lora < 2**30
    assert plan.logits < 2**30  # one 1,024-token chunk: 0.5 GiB, not 4,096 tokens' 4.9
    assert 12 * 2**30 < plan.activations < 16 * 2**30
    assert planned_memory(config("hf-liger")) == {}
