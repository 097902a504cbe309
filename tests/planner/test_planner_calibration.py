"""The calibration comparison on a given measurement file, and the calibration script's case list."""

import importlib.util
import json
from pathlib import Path

import pytest

import recipes
from primus_bridge.bench.shapes import SHAPES
from primus_bridge.planner.calibration import Measurement, compare_one, load_measurements, measurements_json


SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "calibrate_planner.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("calibrate_planner", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_config(mode: str, seq: int, micro: int, recompute: bool) -> dict:
    values = {"engine": "megatron", "convert_from_hf": True, "hf_model_name_or_path": "/gone/llama-1b",
              "training": {"micro_batch_size": micro, "global_batch_size": 2 * micro},
              "data": {"seq_length": seq}, "activation_checkpointing": {"recompute_activations": recompute}}
    if mode == "lora":
        values["lora"] = {"use_lora": True, "lora_rank": 16, "lora_dropout": 0.0,
                          "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    return values


def measured(case: str, config: dict, planned_over_measured: float) -> Measurement:
    """A measurement whose peak is the planner's estimate divided by the given ratio."""
    shape = recipes.recipe("llama32_1b").shape
    probe = Measurement(case, shape, config, 1, 1, peak_memory_allocated=1)
    planned_bytes = compare_one("h200", probe).error + 1  # planned / 1 byte
    return Measurement(case, shape, config, 1, 1, peak_memory_allocated=int(planned_bytes / planned_over_measured),
                       peak_memory_reserved=int(1.1 * planned_bytes / planned_over_measured))


def test_compare_flags_cases_outside_15_percent(tmp_path, script):
    good = measured("sft-close", run_config("sft", 2048, 1, False), 1.10)
    bad = measured("lora-far", run_config("lora", 4096, 2, True), 1.30)
    path = tmp_path / "m.json"
    path.write_text(measurements_json("h200", [good, bad]))
    assert script.main(["--compare", str(path), "--out_dir", str(tmp_path / "out")]) == 1
    report = json.loads((tmp_path / "out" / "planner_calibration.json").read_text())
    rows = {row["case"]: row for row in report["rows"]}
    assert rows["sft-close"]["error"] == pytest.approx(0.10, abs=1e-3) and rows["sft-close"]["within_tolerance"]
    assert rows["lora-far"]["error"] == pytest.approx(0.30, abs=1e-3) and not rows["lora-far"]["within_tolerance"]
    assert rows["lora-far"]["mode"] == "lora" and rows["lora-far"]["recompute"] == "full"
    assert report["all_within"] is False
    table = (tmp_path / "out" / "planner_calibration.md").read_text()
    assert "| sft-close | sft | 2048 | 1 | none |" in table and "| NO |" in table and "1 of 2 cases" in table

    path.write_text(measurements_json("h200", [good]))
    assert script.main(["--compare", str(path), "--out_dir", str(tmp_path / "out")]) == 0


def test_measurement_file_round_trips(tmp_path):
    m = measured("x", run_config("sft", 2048, 1, False), 1.0)
    path = tmp_path / "m.json"
    path.write_text(measurements_json("h200", [m]))
    assert load_measurements(path) == ("h200", [m])


@pytest.mark.parametrize("content,expected", [
    ("[]", "not a measurement file"),
    ('{"gpu": "h200", "measurements": [{"case": "a"}]}', "measurements[0]: missing shape"),
])
def test_bad_measurement_file_names_the_problem(tmp_path, content, expected):
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"m\.json.*" + expected.replace("[", r"\[").replace("]", r"\]")):
        load_measurements(path)


def test_calibration_cases_cover_the_issue(script):
    cases = script.CASES
    assert len(cases) >= 6 and {c.shape for c in cases} <= set(SHAPES)
    assert {c.mode for c in cases} == {"sft", "lora"} and {c.recompute for c in cases} == {True, False}
    assert len({c.seq_length for c in cases}) >= 2 and len({c.micro_batch_size for c in cases}) >= 2
    shapes = [c.shape for c in cases]
    assert shapes == sorted(shapes, key=shapes.index)  # grouped: each model is built once


def test_calibration_cases_fit_one_h200(script, tmp_path):
    """Each case, with the exact config the script runs, fits the calibration machine's one H200."""
    from primus_bridge.bench.workspace import Workspace

    for case in script.CASES:
        shape = SHAPES[case.shape]
        config = script.run_values(case, tmp_path / "model", tmp_path / "data.jsonl", Workspace(tmp_path))
        assert config["activation_checkpointing"]["recompute_activations"] is case.recompute
        row = compare_one("h200", Measurement(case.name, shape, config, 1, 1, peak_memory_allocated=1))
        assert (row.mode, row.seq_length, row.micro_batch_size) == (case.mode, case.seq_length, case.micro_batch_size)
        assert row.planned_total_gib < 0.9 * 139.7, case.name


@pytest.mark.parametrize("stem", ["planner_calibration", "planner_validation"])
def test_the_committed_h200_measurements_stay_within_15_percent(stem):
    """A planner change that breaks the H200 calibration (or the runs held out of it) fails here, without a GPU."""
    committed = Path(__file__).resolve().parents[2] / "benchmarks/reports/planner-calibration"
    gpu, measurements = load_measurements(committed / f"{stem}_measurements.json")
    rows = [compare_one(gpu, m) for m in measurements]
    assert len(rows) >= (6 if stem == "planner_calibration" else 3)
    assert all(r.within_tolerance for r in rows), [(r.case, r.error) for r in rows]
    table = json.loads((committed / f"{stem}.json").read_text())
    assert [(r["case"], r["error"]) for r in table["rows"]] == [(r.case, r.error) for r in rows]


def test_measurements_of_fused_adapters_are_planned_so():
    """The committed LoRA runs had one adapter per fused layer (their entries predate `lora_adapters`): they are
    planned with that layout; a run with per-projection adapters (PEFT's count) plans more adapter memory."""
    from dataclasses import replace

    committed = Path(__file__).resolve().parents[2] / "benchmarks/reports/planner-calibration"
    gpu, measurements = load_measurements(committed / "planner_validation_measurements.json")
    lora = [m for m in measurements if (m.config.get("lora") or {}).get("use_lora")]
    assert lora and all(m.lora_adapters == "fused" for m in lora)
    for m in lora:
        fused, per_projection = compare_one(gpu, m), compare_one(gpu, replace(m, lora_adapters="per_projection"))
        assert per_projection.planned_gib > fused.planned_gib
