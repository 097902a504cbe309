"""A plan as text for people and as a JSON object for scripts, with the changes that would make it fit."""

from dataclasses import fields

from ..config.head_loss import CHUNK_TOKENS
from ..hardware import GIB
from .activations import chunked_head
from .advice import Suggestion
from .layout import Layout
from .plan import Plan

PART_NOTES = {
    "weights": "bf16 copy, 2 B/param",
    "gradients": "fp32 main-grad buffer, 4 B/param",
    "optimizer_states": "fp32 master + Adam m, v: 12 B/param, / DP x CP when distributed",
    "activations": "kept for backward (Korthikanti et al., flash attention)",
    "lora": "adapter weights, gradients and optimizer states",
    "logits": "bf16 logits + fp32 softmax + fp32 loss gradient, last stage",
    "optimizer_step_excess": "Adam step temporaries above the backward peak",
    "framework_overhead": "CUDA/HIP context, NCCL/RCCL buffers, workspaces",
    "allocator_fragmentation": "5% of tensor memory",
}


def gib(value: float) -> float:
    return round(value / GIB, 2)


def stage_name(plan: Plan) -> str:
    if plan.layout.pp == 1:
        return "only"
    return "first" if plan.stage == 0 else "last"


def layout_dict(layout: Layout) -> dict:
    return {
        "tp": layout.tp, "pp": layout.pp, "vpp": layout.vpp, "cp": layout.cp, "dp": layout.dp,
        "sequence_parallel": layout.sequence_parallel, "micro_batch_size": layout.micro_batch,
        "global_batch_size": layout.global_batch, "seq_length": layout.seq_length, "recompute": layout.recompute,
        "distributed_optimizer": layout.distributed_optimizer,
        "lora_rank": layout.lora.rank if layout.lora else None,
    }


def alternatives(plan: Plan) -> dict[str, dict[str, float]]:
    """The parts that the distributed optimizer and recompute change, with each setting."""
    states = "lora" if plan.layout.lora else "optimizer_states"
    on, off = plan.variant(distributed_optimizer=True), plan.variant(distributed_optimizer=False)
    none, full = plan.variant(recompute="none"), plan.variant(recompute="full", recompute_method="uniform",
                                                               recompute_num_layers=1)
    return {
        states: {"distributed_optimizer": gib(getattr(on, states)),
                 "no_distributed_optimizer": gib(getattr(off, states))},
        "activations": {"no_recompute": gib(none.activations), "full_recompute": gib(full.activations)},
    }


# Layout field -> the config key a --set flag changes.
SET_KEYS = {
    "tp": "parallelism.tensor_model_parallel_size", "pp": "parallelism.pipeline_model_parallel_size",
    "cp": "parallelism.context_parallel_size", "sequence_parallel": "parallelism.sequence_parallel",
    "distributed_optimizer": "parallelism.use_distributed_optimizer",
    "recompute_method": "activation_checkpointing.recompute_method",
    "recompute_num_layers": "activation_checkpointing.recompute_num_layers",
}


def _yaml_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def change_flags(before: Layout, after: Layout) -> list[str]:
    """The command-line flags that turn `before` into `after`."""
    flags = []
    if after.world_size != before.world_size:
        flags.append(f"--nodes {after.world_size // after.gpus_per_node}")
    if after.micro_batch != before.micro_batch:
        flags.append(f"--micro_batch_size {after.micro_batch}")
    if after.recompute != before.recompute:
        flags.append("--set activation_checkpointing.recompute_activations=true")
        flags.append(f"--set activation_checkpointing.recompute_granularity={after.recompute}")
    flags += [f"--set {key}={_yaml_value(getattr(after, name))}" for name, key in SET_KEYS.items()
              if getattr(after, name) != getattr(before, name)]
    if after.lora and not before.lora:
        flags.append("--use_lora")
    return flags


def suggestion_dict(plan: Plan, suggestion: Suggestion) -> dict:
    return {"flags": " ".join(change_flags(plan.layout, suggestion.plan.layout)),
            "total_gib": gib(suggestion.plan.memory.total),
            "headroom_pct": round(100 * suggestion.plan.headroom_fraction, 1),
            "tokens_per_s_per_gpu": round(suggestion.plan.speed.tokens_per_s_per_gpu)}


def plan_dict(plan: Plan, suggestions: list[Suggestion]) -> dict:
    """The plan as one JSON-ready object."""
    speed = plan.speed
    return {
        "model": plan.model, "mode": plan.layout.mode, "gpu": plan.gpu.key, "gpu_memory_gib": plan.gpu.memory_gib,
        "nodes": plan.layout.nodes, "gpus_per_node": plan.layout.gpus_per_node, "world_size": plan.layout.world_size,
        "params_billion": round(plan.shape.total_params() / 1e9, 3),
        "layout": layout_dict(plan.layout), "stage": stage_name(plan),
        "breakdown_gib": {name: gib(value) for name, value in plan.memory.as_dict().items()},
        "alternatives_gib": alternatives(plan),
        "total_gib": gib(plan.memory.total), "headroom_gib": gib(plan.headroom_bytes),
        "headroom_pct": round(100 * plan.headroom_fraction, 1), "fits": plan.fits, "problems": plan.problems,
        "speed": {"mfu_assumed": speed.mfu_assumed, "peak_bf16_tflops": speed.peak_tflops,
                  "model_tflop_per_token": round(speed.model_flops_per_token / 1e12, 6),
                  "step_time_s": round(speed.step_time_s, 3),
                  "tokens_per_s_per_gpu": round(speed.tokens_per_s_per_gpu),
                  "pipeline_bubble": round(speed.pipeline_bubble, 4)},
        "suggestions": [suggestion_dict(plan, s) for s in suggestions],
    }


def _header(plan: Plan) -> list[str]:
    layout = plan.layout
    recompute = "no recompute" if layout.recompute == "none" else f"{layout.recompute} recompute"
    return [
        f"plan: {plan.model} {layout.mode} on {layout.nodes:g} node(s) x {layout.gpus_per_node} {plan.gpu.key} "
        f"({plan.gpu.memory_gib} GiB each), {plan.shape.total_params() / 1e9:.2f} B params",
        f"layout: TP {layout.tp} x PP {layout.pp}{f' (VPP {layout.vpp})' if layout.vpp else ''} x CP {layout.cp} "
        f"x DP {layout.dp}, sequence parallel {'on' if layout.sequence_parallel else 'off'}; micro batch "
        f"{layout.micro_batch}, global batch {layout.global_batch}, seq {layout.seq_length}; {recompute}; "
        f"distributed optimizer {'on' if layout.distributed_optimizer else 'off'}",
        "per GPU:" if layout.pp == 1 else f"per GPU ({stage_name(plan)} pipeline stage, the fullest):",
    ]


def _parts(plan: Plan) -> list[str]:
    alt = alternatives(plan)
    lines = []
    for field in fields(plan.memory):
        value = getattr(plan.memory, field.name)
        note = PART_NOTES[field.name]
        if plan.layout.lora and field.name in ("gradients", "optimizer_states"):
            note = "none: LoRA freezes the base model"
        if field.name == "logits" and chunked_head(plan.shape, plan.layout):
            note = (f"chunked head loss: bf16 logits and their gradient for {CHUNK_TOKENS:,} tokens at a time + the "
                    "hidden-state gradient")
        if field.name in alt:
            note += "; " + ", ".join(f"{k.replace('_', ' ')}: {v:.1f} GiB" for k, v in alt[field.name].items())
        lines.append(f"  {field.name.replace('_', ' '):<24}{value / GIB:8.1f} GiB   {note}")
    return lines


def _verdict(plan: Plan) -> list[str]:
    total = f"  {'total':<24}{plan.memory.total / GIB:8.1f} GiB of {plan.gpu.memory_gib} GiB"
    if plan.fits:
        return [f"{total} -> fits, {plan.headroom_bytes / GIB:.1f} GiB ({100 * plan.headroom_fraction:.0f}%) headroom"]
    if plan.fits_in_memory:
        lines = [f"{total} -> does not fit: the memory would, but this layout cannot run here"]
    else:
        lines = [f"{total} -> does not fit (short by {-plan.headroom_bytes / GIB:.1f} GiB)"]
    return lines + [f"  problem: {problem}" for problem in plan.problems]


def _advice(plan: Plan, suggestions: list[Suggestion]) -> list[str]:
    if plan.fits:
        return []
    if not suggestions:
        return ["no change of up to three steps (TP, PP, CP, recompute, micro batch, LoRA, more nodes) makes it fit"]
    lines = ["to make it fit (fewest changes first):"]
    for s in suggestions:
        d = suggestion_dict(plan, s)
        lines.append(f"  {d['flags']}  ->  {d['total_gib']:.1f} GiB, {d['headroom_pct']:.0f}% headroom, "
                     f"~{d['tokens_per_s_per_gpu']:,} tokens/s/GPU")
    return lines


def _speed(plan: Plan) -> str:
    s = plan.speed
    return (f"speed (assuming {100 * s.mfu_assumed:.0f}% of the {s.peak_tflops:g} TFLOP/s bf16 peak): "
            f"~{s.step_time_s:.2f} s per step, ~{s.tokens_per_s_per_gpu:,.0f} tokens/s/GPU"
            + (f" (pipeline bubble {100 * s.pipeline_bubble:.1f}%)" if s.pipeline_bubble else ""))


def plan_text(plan: Plan, suggestions: list[Suggestion]) -> str:
    return "\n".join([*_header(plan), *_parts(plan), *_verdict(plan), *_advice(plan, suggestions), _speed(plan)])
