"""Every suite's cases are well-formed and build a valid config for every system; targets point at real runs."""

from pathlib import Path

import pytest

from primus_bridge.bench.shapes import SHAPES, get_shape
from primus_bridge.bench.suites import SUITES, SYSTEMS, get_suite
from primus_bridge.bench.workspace import Workspace, build_config, case_values, rows_needed

CASES = [(suite, case) for suite in SUITES.values() for case in suite.cases]


@pytest.mark.parametrize("suite,case", CASES, ids=[f"{s.name}:{c.name}" for s, c in CASES])
def test_case_builds_a_valid_config_for_every_system(suite, case, tmp_path):
    assert case.shape in SHAPES or case.shape == "tiny"
    assert case.global_batch_size % case.micro_batch_size == 0
    for system in suite.systems:
        values = case_values(case, suite, system, tmp_path / "model", tmp_path / "data.jsonl", Workspace(tmp_path))
        cfg = build_config(values, case, suite.gpus)
        assert cfg.engine == SYSTEMS[system].engine
        assert cfg.model.attn_implementation == dict(SYSTEMS[system].model_settings).get("attn_implementation", "auto")
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
    assert set(suite.systems) == {"megatron", "hf", "hf-flex", "hf-liger"}
    assert dict(SYSTEMS["hf-liger"].model_settings) == {"attn_implementation": "flex_attention", "liger_kernel": True}
    assert all(set(c.lora_targets) == set(SHAPES["llama3-8b"].linear_dims()) for c in suite.cases)


def test_h200_runs_fit_in_six_device_calls():
    """Each run (case x system) within one 9-minute call and its timeout, the whole suite within six."""
    suite = get_suite("h200")
    assert all(case.expected_for(system) < min(case.timeout_s, 540) for case in suite.cases for system in suite.systems)
    assert sum(case.expected_total_s for case in suite.cases) <= 6 * 540
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
    from primus_bridge.bench.suites import SUITES, Target

    recorded = set(RunMetrics.model_fields) | {"peak_memory_allocated"}
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
        assert not cfg.profiling.trace
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
    with pytest.raises(KeyError, match="no system hf-fast; systems: megatron, hf, hf-flex, hf-liger"):
        selected_systems(suite, "hf-fast")
    options = RunOptions(suite, Path("unused"), Workspace(Path("unused")), suite.cases, systems=("hf-liger", "hf-flex"))
    empty = BenchResults.model_construct(runs=[])
    assert pending_systems(empty, suite.cases[0], options) == ["hf-flex", "hf-liger"]  # in the suite's order


def test_unknown_shape_names_the_known_ones():
    with pytest.raises(KeyError, match="llama3-8b"):
        get_shape("llama-9b")
