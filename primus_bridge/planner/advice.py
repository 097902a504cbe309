"""When a plan does not fit: the smallest sets of changes that make it fit.

Each change is one step a user would take (double TP, turn on recompute, halve the micro batch,
...). Sets of one change are tried first, then two, then three; among sets of equal size the
cheaper ones (in throughput lost or hardware added) come first.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..models.lora import PROJECTIONS, LoraSpec
from .layout import Layout
from .plan import Plan, make_plan

MAX_CHANGES = 3
MAX_SUGGESTIONS = 4
COMFORTABLE_HEADROOM = 0.10
# What --use_lora is planned as: rank 16 on every projection (the recipes' choice, and the most memory;
# the config's default of q/k/v/o only needs less).
SUGGESTED_LORA = LoraSpec(rank=16, targets=frozenset(PROJECTIONS), dropout=0.05)


@dataclass(frozen=True)
class Change:
    name: str
    cost: int
    apply: Callable[[Plan, Layout], Layout | None]
    """The changed layout, or None where the change does not apply."""


def _recompute(plan: Plan, layout: Layout) -> Layout | None:
    if layout.recompute == "full" and layout.recompute_num_layers == 1 and layout.recompute_method == "uniform":
        return None
    return replace(layout, recompute="full", recompute_method="uniform", recompute_num_layers=1)


def _halve_micro_batch(plan: Plan, layout: Layout) -> Layout | None:
    return replace(layout, micro_batch=layout.micro_batch // 2) if layout.micro_batch > 1 else None


def _sequence_parallel(plan: Plan, layout: Layout) -> Layout | None:
    return replace(layout, sequence_parallel=True) if layout.tp > 1 and not layout.sequence_parallel else None


def _distributed_optimizer(plan: Plan, layout: Layout) -> Layout | None:
    return None if layout.distributed_optimizer else replace(layout, distributed_optimizer=True)


def _double_tp(plan: Plan, layout: Layout) -> Layout | None:
    tp, shape = layout.tp * 2, plan.shape
    if tp > layout.gpus_per_node or shape.num_attention_heads % tp or shape.num_query_groups % tp:
        return None
    return replace(layout, tp=tp, sequence_parallel=True)


def _double_pp(plan: Plan, layout: Layout) -> Layout | None:
    pp = layout.pp * 2
    return None if plan.shape.num_layers % (pp * (layout.vpp or 1)) else replace(layout, pp=pp)


def _double_cp(plan: Plan, layout: Layout) -> Layout | None:
    cp = layout.cp * 2
    return None if layout.seq_length < 8192 or layout.seq_length % (2 * cp) else replace(layout, cp=cp)


def _lora(plan: Plan, layout: Layout) -> Layout | None:
    return None if layout.lora else replace(layout, lora=SUGGESTED_LORA)


def _more_nodes(plan: Plan, layout: Layout) -> Layout | None:
    """The next GPU count that is whole nodes and a multiple of TP x PP x CP."""
    unit = math.lcm(layout.model_parallel, layout.gpus_per_node)
    return replace(layout, world_size=(layout.world_size // unit + 1) * unit)


CHANGES = [  # cost: a rough rank of throughput lost or hardware added
    Change("sequence parallel", 1, _sequence_parallel),
    Change("distributed optimizer", 1, _distributed_optimizer),
    Change("halve the micro batch", 2, _halve_micro_batch),
    Change("full recompute", 3, _recompute),
    Change("double TP", 4, _double_tp),
    Change("double PP", 4, _double_pp),
    Change("double CP", 4, _double_cp),
    Change("more nodes", 6, _more_nodes),
    Change("LoRA instead of full fine-tuning", 8, _lora),
]


@dataclass(frozen=True)
class Suggestion:
    plan: Plan
    """The plan with the changes applied; its layout differs from the original in what changed."""
    cost: int


def _extend(base: Plan, found: dict[Layout, Suggestion], frontier: list[Suggestion]) -> list[Suggestion]:
    grown = []
    for suggestion in frontier:
        for change in CHANGES:
            layout = change.apply(base, suggestion.plan.layout)
            if layout is None or layout in found or layout == base.layout:
                continue
            plan = make_plan(base.shape, layout, base.gpu, base.model, base.speed.mfu_assumed)
            found[layout] = Suggestion(plan, suggestion.cost + change.cost)
            grown.append(found[layout])
    return grown


def suggest(plan: Plan) -> list[Suggestion]:
    """Up to MAX_SUGGESTIONS change sets that make `plan` fit: fewest changes first, then those leaving
    comfortable headroom, then the cheapest."""
    found: dict[Layout, Suggestion] = {}
    frontier = [Suggestion(plan, 0)]
    for _ in range(MAX_CHANGES):
        frontier = _extend(plan, found, frontier)
        fitting = sorted((s for s in frontier if s.plan.fits), key=lambda s: (
            s.plan.headroom_fraction < COMFORTABLE_HEADROOM, s.cost, -s.plan.headroom_bytes))
        if fitting:
            return fitting[:MAX_SUGGESTIONS]
    return []
