"""Per-case inputs: the random-weight model, the benchmark data file, and each system's config.

The data is the suite's `data_source`: the shipped sample repeated (speed suites), or records of the synthetic
text process (text_process.py: loss-curve suites, where a memorised sample would drive the loss to zero).

Both systems of a case get the same model folder, data file, tokenizer, seq_length, seed and batch
sizes, so they train on the same packed rows; the harness fingerprints those rows once per case.
"""

import hashlib
import json
import math
from itertools import islice
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..config.layers import Layer, merge_layers, nest
from ..config.resolve import resolve
from ..config.schema import PrimusConfig
from ..utils.atomic import atomic_write_text
from . import text_process
from .processes import log_tail, python_command, run_logged
from .results import DataSource
from .suites import SYSTEMS, BenchCase, Suite

REPO = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = REPO / "examples" / "tokenizer"
SAMPLE_DATA = REPO / "examples" / "data" / "alpaca_sample.jsonl"
DEFAULT_WORKDIR = REPO / ".cache" / "primus-bridge" / "bench"
LEARNING_RATES = {"sft": 1.0e-5, "lora": 2.0e-4}  # the contract's guidance ranges
MAX_DATA_ATTEMPTS = 4
TEXT_PROCESS_RECORDS_PER_COPY = 200
"""The text process's data grows in blocks of this many records (the sample's grows by copies of itself)."""
BUILD_TIMEOUT_S = 900


@dataclass(frozen=True)
class Workspace:
    """Scratch space of a benchmark run (models, data, per-run configs and logs); not part of the report."""

    root: Path

    def model_dir(self, shape: str) -> Path:
        return self.root / "models" / shape

    def data_file(self, copies: int, source: DataSource = "sample") -> Path:
        """Named by the source (the sample, or the text process) and its content, the sample's file or the text
        process's code: an edited source is never served from an old file, and the two never share a name."""
        if source == "text-process":
            digest = hashlib.sha256(Path(text_process.__file__).read_bytes()).hexdigest()[:12]
            records = copies * TEXT_PROCESS_RECORDS_PER_COPY
            return self.root / "data" / f"text-process-seed{text_process.SEED}-{digest}-n{records}.jsonl"
        digest = hashlib.sha256(SAMPLE_DATA.read_bytes()).hexdigest()[:12]
        return self.root / "data" / f"{SAMPLE_DATA.stem}-{digest}-x{copies}.jsonl"

    def run_dir(self, case: BenchCase, system: str) -> Path:
        return self.root / "runs" / case.name / system

    def log_file(self, case: BenchCase, system: str) -> Path:
        return self.root / "logs" / f"{case.name}-{system}.log"

    def engine_dir(self, shape: str) -> Path:
        """Working folder of the training processes: what engines cache relative to it (e.g. the megatron
        engine's HF import) stays per shape and goes with the model."""
        return self.root / "engine" / shape


def ensure_model(workspace: Workspace, case: BenchCase, suite: Suite, log: Path) -> Path:
    """The case's random-weight HF checkpoint; built once per shape (in a subprocess on GPU)."""
    out = workspace.model_dir(case.shape)
    if case.shape == "tiny":
        from ..models.tiny import ensure_tiny_llama

        return ensure_tiny_llama(TOKENIZER_DIR, out)[0]
    device = "cuda" if suite.device == "gpu" else "cpu"
    args = ["--shape", case.shape, "--tokenizer", str(TOKENIZER_DIR), "--out", str(out), "--device", device,
            "--dtype", suite.precision]
    finished = run_logged(python_command("primus_bridge.bench.build_model", args, gpus=0), log, BUILD_TIMEOUT_S, REPO)
    if finished.returncode != 0:
        raise RuntimeError(f"building the {case.shape} model failed ({finished.returncode=}):\n{log_tail(log)}")
    return out


def remove_model(workspace: Workspace, shape: str) -> None:
    """Free the disk a shape took (its checkpoint and the engines' caches of it) once its cases are done."""
    shutil.rmtree(workspace.model_dir(shape), ignore_errors=True)
    shutil.rmtree(workspace.engine_dir(shape), ignore_errors=True)


def write_repeated_data(copies: int, out: Path) -> Path:
    """The sample data repeated `copies` times: enough packed rows for every step of a case."""
    if not out.is_file():
        text = SAMPLE_DATA.read_text(encoding="utf-8")
        atomic_write_text(out, (text if text.endswith("\n") else text + "\n") * copies)
    return out


def write_case_data(source: DataSource, copies: int, out: Path) -> Path:
    """`copies` of the suite's data: the sample repeated, or TEXT_PROCESS_RECORDS_PER_COPY records a copy of the
    text process (each record freshly drawn: the first records are the same for any count)."""
    if source == "text-process":
        return out if out.is_file() else text_process.write_text_process(copies * TEXT_PROCESS_RECORDS_PER_COPY, out)
    return write_repeated_data(copies, out)


def case_values(case: BenchCase, suite: Suite, system: str, model_dir: Path, data_file: Path,
                workspace: Workspace) -> dict:
    """The config of one system on one case, in the YAML layout: the case's, then the system's settings over it."""
    on_gpu = suite.device == "gpu"
    values = {
        "engine": SYSTEMS[system].engine,
        "hf_model_name_or_path": str(model_dir),
        "convert_from_hf": True,
        "model": {"tokenizer": str(TOKENIZER_DIR)},
        "training": {
            "micro_batch_size": case.micro_batch_size, "global_batch_size": case.global_batch_size,
            "train_iters": suite.warmup_steps + suite.timed_steps, "lr": LEARNING_RATES[case.mode],
            "lr_warmup_iters": 0, "lr_decay_style": "constant", "eval_iters": 0, "log_interval": 1, "seed": 1234,
        },
        "precision": {"bf16": on_gpu},
        "data": {
            "data_path": str(data_file), "dataset_format": "alpaca", "prompt_template": "alpaca",
            "split": "100,0,0", "seq_length": case.seq_length, "packing": True,
            "cache_dir": str(workspace.root / "data-cache"),
        },
        "lora": lora_values(case),
        "checkpointing": {"save": None},
    }
    return with_settings(values, SYSTEMS[system].settings)


def with_settings(values: dict, settings: tuple[tuple[str, object], ...]) -> dict:
    """`values` with each ("section.key", value) set over it, by the config's own layering (config/layers.py)."""
    layers = [Layer("bench case", values), *(Layer(f"system setting {dotted}", nest(dotted, value))
                                            for dotted, value in settings)]
    return merge_layers(layers)[0]


def lora_values(case: BenchCase) -> dict:
    """LoRA keys only for LoRA cases (the config refuses LoRA settings without use_lora)."""
    if case.mode != "lora":
        return {}
    return {"use_lora": True, "lora_rank": case.lora_rank, "lora_alpha": 2 * case.lora_rank, "lora_dropout": 0.0,
            "lora_target_modules": list(case.lora_targets)}


def build_config(values: dict, case: BenchCase, gpus: int) -> PrimusConfig:
    """Validate with the same checks a user's config gets."""
    return resolve([Layer(f"bench case {case.name}", values)], world_size=max(gpus, 1))[0]


def rows_needed(case: BenchCase, suite: Suite) -> int:
    return case.global_batch_size * (suite.warmup_steps + suite.timed_steps)


def consumed_rows(split, seed: int, count: int) -> list[int]:
    """Row indices of the first `count` samples in the data pipeline's order (what both engines read)."""
    from ..data.batches import sample_indices

    return list(islice(sample_indices(len(split), 0, seed, epochs=None), count))


def fingerprint_rows(split, indices: list[int]) -> str:
    """sha256 over the input_ids, labels and position_ids of the given rows, in order."""
    digest = hashlib.sha256()
    for index in indices:
        row = split[index]
        for array in (row.input_ids, row.labels, row.position_ids):
            digest.update(array.tobytes())
    return digest.hexdigest()


def prepare_case_data(case: BenchCase, suite: Suite, model_dir: Path, workspace: Workspace) -> tuple[Path, int, str]:
    """(data file, packed training rows, fingerprint): more copies of the suite's data until every step has fresh
    rows."""
    from ..data import prepare_data
    from ..data.tokenizer import load_tokenizer

    copies, needed = 1, rows_needed(case, suite)
    system = [name for name in suite.systems if case.mode in SYSTEMS[name].applies_to][-1]
    for _ in range(MAX_DATA_ATTEMPTS):
        data_file = write_case_data(suite.data_source, copies, workspace.data_file(copies, suite.data_source))
        cfg = build_config(case_values(case, suite, system, model_dir, data_file, workspace), case, suite.gpus)
        prepared = prepare_data(cfg, load_tokenizer(cfg))
        rows = len(prepared.train)
        if rows >= needed:
            consumed = consumed_rows(prepared.train, cfg.data.seed, needed)
            return data_file, rows, fingerprint_rows(prepared.train, consumed)
        copies = max(copies + 1, math.ceil(copies * needed * 1.15 / max(rows, 1)))
    raise RuntimeError(f"{case.name}: could not make {needed} packed rows from the {suite.data_source} data")


def write_run_config(values: dict, run_dir: Path) -> Path:
    path = run_dir / "bench_config.json"
    atomic_write_text(path, json.dumps(values, indent=2) + "\n")
    return path
