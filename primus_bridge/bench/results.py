"""Everything a benchmark run measured, as one typed object that round-trips through results.json."""

import dataclasses
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from ..planner.memory import MemoryBreakdown
from ..utils.atomic import atomic_write_text
from .environment import Environment
from .peak import MatmulPeak

RESULTS_FILE = "results.json"
DataSource = Literal["sample", "text-process"]
"""What a suite's cases train on: "sample", the shipped examples/data/alpaca_sample.jsonl repeated until every step
has fresh rows (a model memorises it: fine for speed, not for comparing loss curves); "text-process", records
freshly drawn from the synthetic text process (text_process.py), whose loss cannot fall to zero."""


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseShape(Record):
    """What fixes a case's work: model shape, mode, row length and batch sizes (suites and results share it)."""

    name: str
    shape: str
    mode: Literal["sft", "lora"]
    seq_length: int
    micro_batch_size: int
    global_batch_size: int


class CaseInfo(CaseShape):
    """A case as it ran: its definition plus the numbers derived from it."""

    lora_rank: int | None
    lora_targets: list[str] | None
    tokens_per_step: int
    flops_per_token: int
    data_fingerprint: str | None = None
    """sha256 of the packed rows the steps consume, in the data pipeline's order (input_ids, labels, position_ids)."""
    data_rows: int | None = None


class RunMetrics(Record):
    warmup_steps: int
    timed_steps: int
    step_time_mean_s: float
    step_time_p50_s: float
    step_time_p90_s: float
    tokens_per_s_per_gpu: float
    model_tflops_per_gpu: float
    mfu_measured: float | None
    mfu_datasheet: float | None
    loss_first: float | None
    loss_last: float | None


class DeviceBusy(Record):
    """How busy the GPU was over a profiled step (run/device_gaps.py): below 100%, the device waited for the host
    (launches, Python, data loading, syncs) for the rest of the window."""

    window_ms: float
    busy_ms: float
    busy_fraction: float
    host_syncs: int
    host_sync_ms: float


class SystemRun(Record):
    """One system on one case, in its own process."""

    case: str
    system: str
    status: Literal["ok", "failed", "timeout", "skipped", "not_applicable"]
    """skipped: the machine lacks what the system needs (a GPU, FP8 matmuls); not_applicable: the system does not
    apply to the case (e.g. an FP8 frozen base on a full-SFT case). Neither trains nor counts as a failure."""
    reason: str | None = None
    wall_s: float | None = None
    gpus: int = 1
    step_times: list[float] = []
    losses: list[float] = []
    tokens_per_step: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    peak_memory_allocated: int | None = None
    peak_memory_reserved: int | None = None
    peak_rss: int | None = None
    planned_memory: dict[str, float] = {}
    """The planner's per-GPU bytes by part for this run (planner/memory.MemoryBreakdown; megatron engine on a GPU)."""
    engine_details: dict = {}
    metrics: RunMetrics | None = None
    device_busy: DeviceBusy | None = None
    """With --profile on a GPU: the profiled step's device busy time."""
    call: int | None = None
    """Which of BenchResults.calls ran it (its MFU is against that call's peak; folders written before calls were
    recorded get 0 when read)."""

    def planned(self) -> MemoryBreakdown | None:
        """planned_memory as the planner's breakdown (parts it did not record, e.g. from an older planner, as 0)."""
        if not self.planned_memory:
            return None
        return MemoryBreakdown(**{f.name: self.planned_memory.get(f.name, 0.0)
                                  for f in dataclasses.fields(MemoryBreakdown)})


class TargetResult(Record):
    title: str
    description: str
    threshold: float
    op: Literal[">=", "<="]
    value: float | None
    met: bool | None
    """None when a run it needs is missing or failed."""
    detail: str | None = None
    """What else the check found (a loss-curve target: its largest per-step gap, or why it could not compare)."""


class BenchCall(Record):
    """One invocation of the harness on a report folder (a suite may take several, resumed on other machines):
    the matmul peak measured on its machine, and the code it ran."""

    started: str
    device: str
    revision: str | None = None
    dirty: bool | None = None
    measured_peak: MatmulPeak


class BenchResults(Record):
    suite: str
    description: str
    started: str
    updated: str
    precision: str
    data_source: DataSource = "sample"
    """What the cases trained on (folders written before it was recorded all trained on the sample)."""
    warmup_steps: int
    timed_steps: int
    systems: dict[str, str]
    environment: Environment
    """The first call's machine and code (every call's device, revision and peak: `calls`)."""
    datasheet_peak_tflops: float | None
    flops_formula: str
    calls: list[BenchCall]
    cases: list[CaseInfo] = []
    runs: list[SystemRun] = []
    targets: list[TargetResult] = []

    @model_validator(mode="before")
    @classmethod
    def _calls_of_older_folders(cls, data):
        """Folders written before calls were recorded hold one `measured_peak` and the code revision in the
        environment, their only call's (its runs ran in it); later ones may hold them beside `calls` (the first
        call's again)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        env = data["environment"]
        env = dict(env) if isinstance(env, dict) else dataclasses.asdict(env)
        revision, dirty = env.pop("git_revision", None), env.pop("git_dirty", None)  # now each call's
        data["environment"] = env
        if "measured_peak" not in data:
            return data
        peak = data.pop("measured_peak")
        if not data.get("calls"):
            data["calls"] = [{"started": data["started"], "device": env["device"]["name"], "revision": revision,
                              "dirty": dirty, "measured_peak": peak}]
            data["runs"] = [{**run, "call": 0} if isinstance(run, dict) and run.get("call") is None else run
                            for run in data.get("runs", [])]
        return data

    @property
    def measured_peak(self) -> MatmulPeak:
        """The first call's matmul peak (the folder's, where one call ran every run)."""
        return self.calls[0].measured_peak

    def peak_for(self, run: SystemRun) -> MatmulPeak:
        """The matmul peak measured in the call that ran `run` (not put in yet: this call, the latest)."""
        return self.calls[-1 if run.call is None else run.call].measured_peak

    def run(self, case: str, system: str) -> SystemRun | None:
        return next((r for r in self.runs if r.case == case and r.system == system), None)

    def put_run(self, run: SystemRun) -> None:
        """Add a run, replacing an earlier one of the same case and system; without a call, it is the latest call's."""
        if run.call is None:
            run = run.model_copy(update={"call": len(self.calls) - 1})
        self.runs = [r for r in self.runs if (r.case, r.system) != (run.case, run.system)] + [run]

    def put_case(self, case: CaseInfo) -> None:
        self.cases = [c for c in self.cases if c.name != case.name] + [case]

    def case_info(self, name: str) -> CaseInfo | None:
        return next((c for c in self.cases if c.name == name), None)


def save_results(results: BenchResults, folder: Path) -> Path:
    path = Path(folder) / RESULTS_FILE
    atomic_write_text(path, results.model_dump_json(indent=2) + "\n")
    return path


def load_results(folder: Path) -> BenchResults:
    path = Path(folder) / RESULTS_FILE
    try:
        return BenchResults.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no results to read; run the suite first (primus-bridge bench)") from None
