"""The report writers on a hand-made result: every file, the numbers in them, and the index."""

import csv

import pytest

from primus_bridge.bench.report import write_reports
from primus_bridge.bench.report.index import write_index
from primus_bridge.bench.report.markdown import markdown_text
from primus_bridge.bench.results import load_results
from tests.bench.conftest import GIB

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_results_json_round_trips(sample_results, tmp_path):
    write_reports(sample_results, tmp_path)
    assert load_results(tmp_path) == sample_results


def test_every_report_file_is_written(sample_results, tmp_path):
    paths = write_reports(sample_results, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["loss.png", "memory.png", "report.md", "results.csv", "results.json", "throughput.png"]
    for png in ("loss.png", "memory.png", "throughput.png"):
        assert (tmp_path / png).read_bytes().startswith(PNG_MAGIC)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_csv_has_one_row_per_run_with_its_numbers(sample_results, tmp_path):
    write_reports(sample_results, tmp_path)
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [(r["case"], r["system"], r["status"]) for r in rows] == [
        ("lora-4k", "megatron", "ok"), ("lora-4k", "hf", "ok"), ("lora-8k", "megatron", "ok"),
        ("lora-8k", "hf", "failed")]
    assert float(rows[0]["tokens_per_s_per_gpu"]) == pytest.approx(16384.0)
    assert float(rows[1]["peak_memory_allocated_gib"]) == pytest.approx(60.0)
    assert rows[3]["reason"] == "exit code 1:"
    assert rows[3]["tokens_per_s_per_gpu"] == ""


def test_markdown_holds_table_comparison_targets_and_failures(sample_results):
    text = markdown_text(sample_results)
    assert "| lora-4k | megatron | 16,384 |" in text
    assert "| lora-4k | hf | 1.50x | 0.67x |" in text
    assert "Targets met: 3 of 5. Not met: mfu 8k. Not measured (a run missing or failed): hf 8k." in text
    assert "CUDA out of memory" in text
    assert "790 TFLOP/s median" in text and "80% of the datasheet's 989.4" in text
    assert "transformer-engine absent" in text
    assert "![throughput](throughput.png)" in text
    assert "- **hf**: baseline (attn_implementation: sdpa)" in text
    assert "- **megatron**: ours\n" in text


def test_notes_file_is_included(sample_results, tmp_path):
    (tmp_path / "notes.md").write_text("Fused the adapters: +20%.\n")
    write_reports(sample_results, tmp_path)
    assert "## Notes\n\nFused the adapters: +20%." in (tmp_path / "report.md").read_text()


def test_index_lists_each_run_with_headline_numbers(sample_results, tmp_path):
    write_reports(sample_results, tmp_path / "2026-11-29-h200-h200")
    index = write_index(tmp_path).read_text()
    assert "[2026-11-29-h200-h200](2026-11-29-h200-h200/report.md)" in index
    assert "megatron 16,384 (69.5%) / hf 10,923 (46.3%)" in index
    assert "| 1.50x | 0.67x | 3/5 met |" in index
    assert "hf failed" in index


def test_index_tells_a_system_that_does_not_apply_from_one_that_did_not_run(sample_results, tmp_path):
    from tests.bench.conftest import make_case

    sample_results.systems["megatron-fp8"] = "the FP8 frozen base"
    sft = make_case("sft-4k").model_copy(update={"mode": "sft"})
    sample_results.cases = [sft, *sample_results.cases]
    write_reports(sample_results, tmp_path / "run")
    index = write_index(tmp_path).read_text()
    assert "| sft-4k | megatron not run / hf not run / megatron-fp8 not_applicable |" in index  # LoRA cases only
    assert "megatron-fp8 not run |" in index  # a LoRA case it was not asked to run


def test_empty_index(tmp_path):
    assert "No runs yet." in write_index(tmp_path).read_text()


def test_markdown_shows_the_fp8_variant_apart_from_the_baselines_and_not_applicable_runs(sample_results):
    from primus_bridge.bench.results import SystemRun
    from primus_bridge.bench.suites import SYSTEMS
    from tests.bench.conftest import make_run

    sample_results.systems = {name: SYSTEMS[name].description for name in ("megatron", "megatron-fp8", "hf")}
    four_k = sample_results.case_info("lora-4k")
    sample_results.put_run(make_run(four_k, "megatron-fp8", 1.25, 30.0, sample_results))
    sample_results.put_run(SystemRun(case="lora-8k", system="megatron-fp8", status="not_applicable",
                                     reason="megatron-fp8 applies to lora cases only, not sft"))
    text = markdown_text(sample_results)
    baselines = text[text.index("## megatron vs each baseline"):text.index("## megatron-fp8 vs megatron")]
    assert "| lora-4k | hf | 1.50x | 0.67x |" in baselines and "megatron-fp8 |" not in baselines
    assert "## megatron-fp8 vs megatron (same batches)" in text
    assert "| lora-4k | megatron | 1.60x | 0.75x |" in text
    assert "| lora-8k | megatron-fp8 | – | – | – | – | – | – | – | – | not applicable |" in text
    assert "- lora-8k / megatron-fp8: not applicable (megatron-fp8 applies to lora cases only, not sft)" in text
    assert "### lora-8k / megatron-fp8" not in text  # not a failure


def test_a_loss_curve_target_is_stated_with_its_per_step_gap(sample_results):
    from primus_bridge.bench.results import TargetResult

    sample_results.targets = [TargetResult(title="curve", description="max over windows ... <= 0.01", threshold=0.01,
                                           op="<=", value=0.004, met=True, detail="largest per-step gap 2.100%")]
    text = markdown_text(sample_results)
    assert "| curve | 0.004 | <= 0.01 | **met** | max over windows ... <= 0.01 (largest per-step gap 2.100%) |" in text


def test_a_run_of_a_resumed_call_is_measured_against_its_own_calls_peak(sample_results):
    """A suite resumed on another machine of the same model: the second call's peak is recorded, the run it made is
    measured against it (not the first machine's), and the report lists both calls and which call ran each run."""
    from primus_bridge.bench.peak import MatmulPeak
    from primus_bridge.bench.results import BenchCall
    from primus_bridge.bench.runner import with_metrics

    slower_machine = MatmulPeak("cuda:0", "bf16", 8192, 30, 632.0, 640.0)
    sample_results.calls.append(BenchCall(started="2026-11-29T12:00:00+00:00", device="NVIDIA H200",
                                          revision="def456", measured_peak=slower_machine))
    first = sample_results.run("lora-4k", "hf")
    again = first.model_copy(update={"metrics": None, "call": 1})
    measured = with_metrics(again, sample_results.case_info("lora-4k"), sample_results)
    assert measured.metrics.mfu_measured == pytest.approx(first.metrics.mfu_measured * 790.0 / 632.0)
    sample_results.put_run(measured)
    text = markdown_text(sample_results)
    assert "| 2 | 2026-11-29T12:00:00+00:00 | NVIDIA H200 | def456 | 632 | 1 |" in text
    assert "| 1 | 2026-11-29T10:00:00+00:00 | NVIDIA H200 | abc123 | 790 | 3 |" in text
    hf_row = next(line for line in text.splitlines() if line.startswith("| lora-4k | hf |"))
    assert hf_row.endswith("| ok | 2 |") and f"{measured.metrics.mfu_measured:.1%}" in hf_row


def test_a_folder_written_before_calls_reads_as_one_call(sample_results, tmp_path):
    import json

    from primus_bridge.bench.results import save_results

    path = save_results(sample_results, tmp_path)
    record = json.loads(path.read_text())
    first = record.pop("calls")[0]  # the format before calls: one peak, the revision in the environment
    record["measured_peak"] = first["measured_peak"]
    record["environment"] |= {"git_revision": first["revision"], "git_dirty": first["dirty"]}
    for run in record["runs"]:
        del run["call"]
    path.write_text(json.dumps(record))
    loaded = load_results(tmp_path)
    assert len(loaded.calls) == 1 and loaded.calls[0].measured_peak == sample_results.measured_peak
    assert loaded.calls[0].revision == "abc123" and {run.call for run in loaded.runs} == {0}
    assert "| call |" not in markdown_text(loaded)


def test_profiled_runs_report_how_busy_the_gpu_was(sample_results, tmp_path):
    """--profile on a GPU: the profiler's gaps summary (device_gaps.summary, as run/profiler.py writes it) becomes
    the run's device_busy and a table of the report; runs without a profile stay out of it."""
    import json

    from primus_bridge.bench.runner import profile_folder, profiled_device_busy
    from primus_bridge.run.device_gaps import Interval, device_timeline, summary
    from primus_bridge.run.profiler import gaps_summary_path

    assert profiled_device_busy(tmp_path) is None  # a CPU run: no gaps summary
    timeline = device_timeline([Interval("gemm", 0, 3_000_000)], [Interval("cudaStreamSynchronize", 0, 4_000_000)])
    path = gaps_summary_path(profile_folder(tmp_path), 0)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"steps": [3, 3], **summary(timeline)}))
    busy = profiled_device_busy(tmp_path)
    assert (busy.window_ms, busy.busy_ms, busy.busy_fraction, busy.host_syncs) == (4.0, 3.0, 0.75, 1)
    assert "GPU busy" not in markdown_text(sample_results)
    sample_results.run("lora-4k", "megatron").device_busy = busy
    text = markdown_text(sample_results)
    assert "| lora-4k | megatron | 4.0 | 3.0 | 75.0% | 1 (4.0 ms) |" in text
    assert "| lora-4k | hf | 4" not in text.split("## GPU busy")[1].split("##")[0]


def test_method_names_the_text_process_when_the_suite_trained_on_it(sample_results, tmp_path):
    from primus_bridge.bench.text_process import DESCRIPTION

    assert sample_results.data_source == "sample" and "- Data:" not in markdown_text(sample_results)
    sample_results.data_source = "text-process"
    method = markdown_text(sample_results).split("## Method")[1].split("\n## ")[0]
    assert f"- Data: {DESCRIPTION}." in method and "synthetic text process" in method
    write_reports(sample_results, tmp_path)
    assert load_results(tmp_path).data_source == "text-process"


def test_folders_written_before_the_data_source_was_recorded_read_as_the_sample(sample_results, tmp_path):
    import json

    write_reports(sample_results, tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    del record["data_source"]
    (tmp_path / "results.json").write_text(json.dumps(record))
    assert load_results(tmp_path).data_source == "sample"


def test_resuming_refuses_a_folder_trained_on_another_data_source(sample_results, tmp_path):
    from primus_bridge.bench.runner import RunOptions, resumed_results
    from primus_bridge.bench.suites import get_suite
    from primus_bridge.bench.workspace import Workspace

    suite = get_suite("fp8-loss")
    sample_results.suite = suite.name  # a folder of the suite from before it trained on the text process
    write_reports(sample_results, tmp_path / "report")
    options = RunOptions(suite, tmp_path / "report", Workspace(tmp_path / "work"), suite.cases, resume=True)
    with pytest.raises(ValueError, match="holds runs on the sample data; suite fp8-loss now trains on the "
                                         "text-process data: give this run its own --out folder"):
        resumed_results(options)


def test_runs_with_a_plan_get_the_memory_by_part_table(sample_results):
    assert "Memory by part" not in markdown_text(sample_results)  # no run recorded a plan
    run = sample_results.run("lora-4k", "megatron")
    plan = {"weights": 15.0 * GIB, "lora": 0.5 * GIB, "activations": 16.0 * GIB, "logits": 1.5 * GIB,
            "framework_overhead": 4.0 * GIB}  # planned tensors 33 GiB (no overhead); measured 40
    sample_results.put_run(run.model_copy(update={"planned_memory": plan}))
    text = markdown_text(sample_results)
    assert "## Memory by part (GiB)" in text
    assert "| lora-4k | megatron | 15.0 | 0.5 | 16.0 | 1.5 | 33.0 | 40.0 | 1.21x |" in text
