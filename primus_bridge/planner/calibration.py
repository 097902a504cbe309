"""Planner vs measured peak memory: read a measurement file, re-plan each case, tabulate the error.

A measurement file (JSON) is written by `benchmarks/calibrate_planner.py` on a GPU machine:

    {"gpu": "h200", "measurements": [
        {"case": "...", "shape": {ModelShape fields}, "config": {run config, YAML layout},
         "world_size": 1, "gpus_per_node": 1,
         "peak_memory_allocated": bytes, "peak_memory_reserved": bytes}, ...]}

The planner's tensor memory (weights, gradients, optimizer states, activations, LoRA, logits: what
PyTorch's allocator holds) is compared with torch.cuda.max_memory_allocated over the training steps.
The shape travels in the file, so the comparison runs anywhere, without the model on disk.
A LoRA measurement also says how its adapters were laid out (`lora_adapters`, see LoraSpec.layout):
entries without the key come from runs before per-projection adapters, which had one adapter per fused
layer, and are planned that way.
"""

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..config.layers import Layer
from ..config.resolve import resolve
from ..hardware import GIB, gpu_type
from ..models.lora import AdapterLayout
from ..models.shape import ModelShape
from ..utils.atomic import atomic_write_text
from .layout import layout_from_config
from .plan import make_plan

TOLERANCE = 0.15
REQUIRED_KEYS = ("case", "shape", "config", "world_size", "gpus_per_node", "peak_memory_allocated")


@dataclass(frozen=True)
class Measurement:
    case: str
    shape: ModelShape
    config: dict
    world_size: int
    gpus_per_node: int
    peak_memory_allocated: int
    peak_memory_reserved: int | None = None
    lora_adapters: AdapterLayout = "per_projection"


@dataclass(frozen=True)
class Comparison:
    case: str
    mode: str
    seq_length: int
    micro_batch_size: int
    recompute: str
    planned_gib: float
    measured_gib: float
    error: float
    """planned / measured - 1: positive when the planner over-estimates."""
    within_tolerance: bool
    planned_total_gib: float
    measured_reserved_gib: float | None


def _measurement(entry: dict, where: str) -> Measurement:
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}; each measurement needs {', '.join(REQUIRED_KEYS)}")
    try:
        shape = ModelShape(**entry["shape"])
    except TypeError as err:
        raise ValueError(f"{where}.shape: {err}") from None
    return Measurement(case=entry["case"], shape=shape, config=entry["config"], world_size=entry["world_size"],
                       gpus_per_node=entry["gpus_per_node"], peak_memory_allocated=entry["peak_memory_allocated"],
                       peak_memory_reserved=entry.get("peak_memory_reserved"),
                       lora_adapters=entry.get("lora_adapters", "fused"))


def load_measurements(path: Path) -> tuple[str, list[Measurement]]:
    """(GPU type, measurements) from a measurement file; ValueError naming the file and the entry."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        gpu, entries = data["gpu"], data["measurements"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a measurement file ({type(err).__name__}: {err}); expected "
                         '{"gpu": ..., "measurements": [...]}') from None
    return gpu, [_measurement(entry, f"{path}: measurements[{i}]") for i, entry in enumerate(entries)]


def measurements_json(gpu: str, measurements: list[Measurement]) -> str:
    entries = [{**asdict(m), "shape": asdict(m.shape)} for m in measurements]
    return json.dumps({"gpu": gpu, "measurements": entries}, indent=2) + "\n"


def compare_one(gpu: str, m: Measurement, tolerance: float = TOLERANCE) -> Comparison:
    cfg, _ = resolve([Layer(f"measurement {m.case}", m.config)], world_size=m.world_size)
    layout = layout_from_config(cfg, m.world_size, m.gpus_per_node)
    if layout.lora is not None:
        layout = replace(layout, lora=replace(layout.lora, layout=m.lora_adapters))
    plan = make_plan(m.shape, layout, gpu_type(gpu), m.case)
    planned, measured = plan.memory.tensors, m.peak_memory_allocated
    error = planned / measured - 1
    return Comparison(
        case=m.case, mode=layout.mode, seq_length=layout.seq_length, micro_batch_size=layout.micro_batch,
        recompute=layout.recompute, planned_gib=round(planned / GIB, 2), measured_gib=round(measured / GIB, 2),
        error=round(error, 4), within_tolerance=abs(error) <= tolerance,
        planned_total_gib=round(plan.memory.total / GIB, 2),
        measured_reserved_gib=round(m.peak_memory_reserved / GIB, 2) if m.peak_memory_reserved else None,
    )


def compare(gpu: str, measurements: list[Measurement], tolerance: float = TOLERANCE) -> list[Comparison]:
    return [compare_one(gpu, m, tolerance) for m in measurements]


def markdown_table(gpu: str, rows: list[Comparison], tolerance: float = TOLERANCE) -> str:
    lines = [
        f"Planner vs measured peak memory on one {gpu} (megatron engine; planned tensors vs "
        f"torch.cuda.max_memory_allocated; tolerance +-{tolerance:.0%})",
        "",
        "| case | mode | seq | micro batch | recompute | planned GiB | measured GiB | error | within | "
        "planned total GiB | measured reserved GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reserved = f"{r.measured_reserved_gib:.2f}" if r.measured_reserved_gib is not None else "-"
        lines.append(f"| {r.case} | {r.mode} | {r.seq_length} | {r.micro_batch_size} | {r.recompute} | "
                     f"{r.planned_gib:.2f} | {r.measured_gib:.2f} | {r.error:+.1%} | "
                     f"{'yes' if r.within_tolerance else 'NO'} | {r.planned_total_gib:.2f} | {reserved} |")
    within = sum(r.within_tolerance for r in rows)
    lines += ["", f"{within} of {len(rows)} cases within +-{tolerance:.0%}."]
    return "\n".join(lines) + "\n"


def write_report(gpu: str, rows: list[Comparison], out_dir: Path, stem: str = "planner_calibration",
                 tolerance: float = TOLERANCE) -> tuple[Path, Path]:
    """`<stem>.json` and `<stem>.md` in out_dir, each written atomically."""
    data = {"gpu": gpu, "tolerance": tolerance, "all_within": all(r.within_tolerance for r in rows),
            "rows": [asdict(r) for r in rows]}
    json_path, md_path = Path(out_dir) / f"{stem}.json", Path(out_dir) / f"{stem}.md"
    atomic_write_text(json_path, json.dumps(data, indent=2) + "\n")
    atomic_write_text(md_path, markdown_table(gpu, rows, tolerance))
    return json_path, md_path
