"""`primus-bridge bench --suite cpu-smoke` for real: the tiny model through the HF engine on CPU, every report file."""

import csv
import json

import pytest

from primus_bridge.bench import cli
from primus_bridge.bench.results import load_results
from primus_bridge.cli.main import main as primus_bridge

pytestmark = pytest.mark.slow

REPORT_FILES = {"results.json", "results.csv", "report.md", "throughput.png", "memory.png", "loss.png"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    out, work = root / "report", root / "work"
    code = primus_bridge(["bench", "--suite", "cpu-smoke", "--out", str(out), "--workdir", str(work)])
    return code, out, work


def test_cpu_smoke_writes_every_report_file(smoke):
    code, out, _ = smoke
    assert code == 0
    assert REPORT_FILES <= {p.name for p in out.iterdir()}


def test_hf_runs_are_measured_and_megatron_is_skipped_on_cpu(smoke):
    _, out, _ = smoke
    results = load_results(out)
    assert results.measured_peak.dtype == "fp32" and results.measured_peak.tflops_median > 0
    assert results.datasheet_peak_tflops is None
    for case in results.cases:
        hf, megatron = results.run(case.name, "hf"), results.run(case.name, "megatron")
        assert megatron.status == "skipped"
        assert hf.status == "ok", hf.reason
        assert len(hf.step_times) == len(hf.losses) == 5
        assert hf.metrics.timed_steps == 3
        assert hf.metrics.tokens_per_s_per_gpu > 0 and hf.metrics.mfu_measured > 0
        assert hf.metrics.mfu_datasheet is None
        assert case.data_fingerprint and case.flops_per_token > 0
    lora = results.run("tiny-lora-s256", "hf")
    assert lora.trainable_params < lora.total_params


def test_csv_and_markdown_agree_with_the_json(smoke):
    _, out, _ = smoke
    results = load_results(out)
    rows = {(r["case"], r["system"]): r for r in csv.DictReader((out / "results.csv").open())}
    hf = results.run("tiny-sft-s256", "hf")
    assert float(rows[("tiny-sft-s256", "hf")]["tokens_per_s_per_gpu"]) == pytest.approx(
        hf.metrics.tokens_per_s_per_gpu)
    assert f"| tiny-sft-s256 | hf | {hf.metrics.tokens_per_s_per_gpu:,.0f} |" in (out / "report.md").read_text()


def test_resume_keeps_finished_runs_and_render_rewrites(smoke):
    _, out, work = smoke
    before = json.loads((out / "results.json").read_text())["runs"]
    assert cli.main(["--suite", "cpu-smoke", "--out", str(out), "--workdir", str(work), "--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["runs"] == before
    calls = load_results(out).calls
    assert len(calls) == 2 and calls[1].measured_peak.tflops_median > 0  # this machine's peak, measured again
    assert "| call |" in (out / "report.md").read_text()
    (out / "report.md").unlink()
    assert cli.main(["--suite", "cpu-smoke", "--out", str(out), "--render"]) == 0
    assert (out / "report.md").is_file()


def test_resuming_on_another_machine_model_is_refused(smoke, tmp_path, capsys):
    _, out, work = smoke
    record = json.loads((out / "results.json").read_text())
    record["environment"]["device"]["name"] = "Some Other Processor"
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(record))
    assert cli.main(["--suite", "cpu-smoke", "--out", str(folder), "--workdir", str(work), "--resume"]) == 2
    assert "holds runs on Some Other Processor" in capsys.readouterr().err
    assert json.loads((folder / "results.json").read_text()) == record  # untouched


def test_unknown_case_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["--suite", "cpu-smoke", "--cases", "nope", "--out", str(tmp_path)]) == 2
    assert "tiny-sft-s256" in capsys.readouterr().err


def test_a_spent_time_budget_still_leaves_a_complete_report(tmp_path):
    out = tmp_path / "report"
    assert cli.main(["--suite", "cpu-smoke", "--out", str(out), "--workdir", str(tmp_path / "work"),
                     "--time-budget", "1"]) == 0
    assert REPORT_FILES <= {p.name for p in out.iterdir()}
    assert load_results(out).runs == []


def test_render_without_results_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["--suite", "cpu-smoke", "--out", str(tmp_path / "none"), "--render"]) == 2
    assert "run the suite first" in capsys.readouterr().err
