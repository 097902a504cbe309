"""Benchmark suites as data: which model shapes, modes, lengths and batches, for which systems.

Every system in a suite trains the same case on the same tokens: same random-weight checkpoint,
same packed rows (same data file, tokenizer, seq_length and seed), same precision and batch sizes.
"""

from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict

from ..models.lora import PROJECTIONS, LoraSpec
from .results import CaseShape, DataSource
from .shapes import get_shape


Mode = Literal["sft", "lora"]


@dataclass(frozen=True)
class System:
    engine: str
    needs_gpu: bool
    description: str
    settings: tuple[tuple[str, object], ...] = ()
    """Config keys ("section.key", value) this system sets on every case, over the case's own config."""
    baseline: bool = False
    """An HF + PEFT baseline: the report compares the megatron engine against it."""
    variant_of: str | None = None
    """The system this one is an option of (same engine): the report compares the two."""
    applies_to: tuple[Mode, ...] = ("sft", "lora")
    """Case modes it runs; on the others its runs are recorded as not applicable."""
    needs_fp8: bool = False
    """Needs FP8 matmuls (NVIDIA compute capability 8.9+, AMD MI300/MI350): skipped on other devices."""


SYSTEMS = {
    "megatron": System("megatron", True, "primus-bridge megatron engine (Megatron-Bridge finetune(); TE when present, "
                                         "else the local spec: FlexAttention with a document mask on packed rows; "
                                         "LoRA at TP 1: the chunked frozen-head loss)"),
    "megatron-fp8": System("megatron", True, "the megatron engine with precision.fp8_frozen_base: LoRA's frozen base "
                                             "linears stored in FP8 (e4m3, per-channel scales) and multiplied on the "
                                             "FP8 tensor cores; adapters, norms, attention and head in bf16",
                           (("precision.fp8_frozen_base", True),), variant_of="megatron", applies_to=("lora",),
                           needs_fp8=True),
    "megatron-graph": System("megatron", True, "the megatron engine with model.cuda_graph: full_iteration (each "
                                               "step's forward and backward replayed as one CUDA graph)",
                             (("model.cuda_graph", "full_iteration"),), variant_of="megatron"),
    "megatron-fp8-graph": System("megatron", True, "megatron-fp8 with model.cuda_graph: full_iteration",
                                 (("precision.fp8_frozen_base", True), ("model.cuda_graph", "full_iteration")),
                                 variant_of="megatron-fp8", applies_to=("lora",), needs_fp8=True),
    "hf": System("hf", False, "HF Transformers + PEFT baseline (attention: flash-attention 2 when installed, else "
                              "SDPA with a block-diagonal mask over the packed documents)", baseline=True),
    "hf-flex": System("hf", False, "HF Transformers + PEFT baseline with transformers' flex_attention (a block mask "
                                   "built from the packed rows' position_ids: only blocks inside documents computed)",
                      (("model.attn_implementation", "flex_attention"),), baseline=True),
    "hf-liger": System("hf", True, "HF Transformers + PEFT with liger-kernel (Triton RMSNorm, SwiGLU, RoPE and the "
                                   "fused linear cross-entropy: no vocabulary-wide logits) and transformers' "
                                   "flex_attention on the packed rows: what speed-minded HF users run",
                       (("model.attn_implementation", "flex_attention"), ("model.liger_kernel", True)),
                       baseline=True),
}


class BenchCase(CaseShape):
    """One configuration; every system of the suite runs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lora_rank: int = 16
    lora_targets: tuple[str, ...] = PROJECTIONS
    timeout_s: int = 420
    """Seconds one system may take for this case (start-up, model load, all steps)."""
    expected_s: tuple[tuple[str, int], ...] = (("megatron", 200), ("hf", 100), ("hf-flex", 130), ("hf-liger", 140))
    """Seconds each system is expected to take (start-up, model load, all steps); a run starts only when the
    time budget has this much left."""

    def expected_for(self, system: str) -> int:
        return dict(self.expected_s).get(system, max(seconds for _, seconds in self.expected_s))

    @property
    def expected_total_s(self) -> int:
        return sum(seconds for _, seconds in self.expected_s)

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch_size * self.seq_length

    def lora_spec(self) -> LoraSpec | None:
        return LoraSpec(self.lora_rank, frozenset(self.lora_targets)) if self.mode == "lora" else None


LOSS_CURVE_METRICS = ("loss_window_gap",)
"""Metrics of two runs' loss curves, step by step (bench/metrics.py: loss_curve_gap), not of one run."""


@dataclass(frozen=True)
class Target:
    """A benchmark target: metric of (case, system), optionally divided by the same metric of a reference:
    (case, system, ...); with several systems, the strongest baseline on this metric, i.e. the one whose
    ratio is hardest to meet among those that ran.

    A loss-curve metric (LOSS_CURVE_METRICS) compares the subject's per-step losses with those of one reference
    system instead: "loss_window_gap" is the largest relative gap between the two runs' mean losses over
    consecutive windows of `window_steps` timed steps."""

    title: str
    metric: Literal["tokens_per_s_per_gpu", "peak_memory_allocated", "mfu_measured", "step_time_mean_s",
                    "loss_window_gap"]
    subject: tuple[str, str]
    op: Literal[">=", "<="]
    threshold: float
    reference: tuple[str, ...] | None = None
    window_steps: int = 10
    """Steps per window of a loss-curve metric."""

    def __post_init__(self):
        if self.metric in LOSS_CURVE_METRICS and (self.reference is None or len(self.reference) != 2):
            raise ValueError(f"target {self.title!r}: {self.metric} compares with exactly one reference run "
                             "(reference=(case, system))")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    device: Literal["gpu", "cpu"]
    systems: tuple[str, ...]
    warmup_steps: int
    timed_steps: int
    cases: tuple[BenchCase, ...]
    peak_squares: tuple[int, ...]
    """Sides of the square matmuls timed for the measured peak (see peak.py)."""
    targets: tuple[Target, ...] = ()
    gpus: int = 0
    """GPUs each system trains on (0: CPU)."""

    @property
    def precision(self) -> str:
        return "bf16" if self.device == "gpu" else "fp32"

    peak_model_linears: bool = False
    """Also time each case's own linear layers (tokens of a micro batch x the fused projections' sizes)."""
    data_source: DataSource = "sample"
    """What every case trains on (results.py: DataSource); the description says it where it is not the sample."""

    def peak_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """(m, n, k) shapes whose best median is the measured peak: the squares, then the cases' linears."""
        shapes = [(side, side, side) for side in self.peak_squares]
        if self.peak_model_linears:
            shapes += [shape for case in self.cases for shape in model_linear_shapes(case)]
        return tuple(dict.fromkeys(shapes))

    def case(self, name: str) -> BenchCase:
        for case in self.cases:
            if case.name == name:
                return case
        raise KeyError(f"suite {self.name} has no case {name!r}; cases: {', '.join(c.name for c in self.cases)}")


def model_linear_shapes(case: BenchCase) -> list[tuple[int, int, int]]:
    """(tokens, out, in) of one micro batch through the case's fused QKV, output, gate+up and down projections."""
    shape, tokens = get_shape(case.shape), case.micro_batch_size * case.seq_length
    h, f = shape.hidden_size, shape.ffn_hidden_size
    return [(tokens, shape.query_size + 2 * shape.kv_size, h), (tokens, h, shape.query_size), (tokens, 2 * f, h),
            (tokens, h, f)]


def _cases(systems: tuple[str, ...], rows: list[tuple]) -> tuple[BenchCase, ...]:
    """Rows of (name, shape, mode, seq_length, micro_batch, global_batch, expected seconds, timeout_s); the expected
    seconds are one per system of `systems`, in that order, None where the system does not apply to the mode."""
    fields = ("name", "shape", "mode", "seq_length", "micro_batch_size", "global_batch_size")
    cases = []
    for row in rows:
        name, mode, expected, timeout_s = row[0], row[2], row[6], row[7]
        if len(expected) != len(systems):
            raise ValueError(f"case {name}: {len(expected)} expected times for the {len(systems)} systems {systems}")
        for system, seconds in zip(systems, expected):
            if (seconds is None) == (mode in SYSTEMS[system].applies_to):
                raise ValueError(f"case {name}: {system} on a {mode} case needs "
                                 f"{'an expected time' if seconds is None else 'None (it does not apply)'}")
        keyed = tuple((system, seconds) for system, seconds in zip(systems, expected) if seconds is not None)
        cases.append(BenchCase(**dict(zip(fields, row[:6])), expected_s=keyed, timeout_s=timeout_s))
    return tuple(cases)


# Smallest shapes first (an early, cheap check that both systems run), the targets' cases before the
# rest, and the 1B LoRA case (LoRA vs full SFT on one model) last. A shape's random-weight checkpoint
# and the engines' import of it are removed after its last case in the run. The 8B sequence sweep keeps
# the tokens per step fixed (32768). Expected times are per system, from the H200 runs: start-up, model
# load (the megatron engine imports the HF weights once per shape: the first case of a shape pays it),
# 13 steps, from the H200 runs' wall times: 1B SFT 153 / 48 s, 3B SFT 120 / 54 s, the first 8B case
# 223 / 144 s (profiled, about 40 / 60 s of it), later 8B cases 91-120 / 69-107 s, 1B LoRA 103 / 40 s;
# hf-flex: the hf times plus the compilation of the flex kernels; hf-liger: hf-flex's plus the Triton kernels'.
# megatron-fp8: megatron's (it may be the first megatron run of a shape, paying the import); LoRA cases only.
# On the H100 (2026-12-06, a fresh machine each call) the 8B s4096 runs took megatron 231 s, megatron-fp8 252 s
# (about 60 s of each the first compilation of the RoPE, attention and FP8 graphs), hf-liger 121 s.
# megatron-graph and megatron-fp8-graph: as megatron and megatron-fp8 (the recording adds seconds).
# Later H100 calls (suite-6, a fresh machine) took less: 8B s4096 megatron-graph 130 s (import included; the random
# checkpoint 39 s before it), megatron-fp8-graph after it 77 s, hf-liger 77 s; 1B SFT megatron-graph 97 s, 1B LoRA
# 50 s. The megatron systems' times below are those with about 30% to spare; an FP8 system follows a bf16 megatron
# run of its shape in the suite's order, which pays the shape's import.
ONE_GPU_SYSTEMS = ("megatron", "megatron-fp8", "megatron-graph", "megatron-fp8-graph", "hf", "hf-flex", "hf-liger")
ONE_GPU_CASES = _cases(ONE_GPU_SYSTEMS, [
    # name                     shape          mode    seq  micro global (seconds per ONE_GPU_SYSTEMS)  timeout
    ("llama3.2-1b-sft-s4096",  "llama3.2-1b", "sft",  4096, 2, 16, (130, None, 130, None, 60, 90, 100), 300),
    ("llama3.2-3b-sft-s4096",  "llama3.2-3b", "sft",  4096, 1, 8, (160, None, 160, None, 70, 100, 110), 360),
    ("llama3-8b-lora-s4096",   "llama3-8b",   "lora", 4096, 1, 8, (170, 110, 170, 110, 110, 140, 120), 480),
    ("llama3-8b-lora-s8192",   "llama3-8b",   "lora", 8192, 1, 4, (160, 160, 160, 160, 120, 150, 160), 420),
    ("llama3-8b-lora-s2048",   "llama3-8b",   "lora", 2048, 2, 16, (160, 160, 160, 160, 100, 130, 140), 420),
    ("llama3.2-1b-lora-s4096", "llama3.2-1b", "lora", 4096, 2, 16, (80, 80, 80, 80, 60, 90, 100), 300),
])

HF_BASELINES = tuple(name for name, system in SYSTEMS.items() if system.baseline)

TARGET_SUBJECT, FP8_TARGET_SUBJECT = "megatron-graph", "megatron-fp8-graph"
"""The one-GPU targets' subject: the megatron engine as it runs fastest on one GPU, with model.cuda_graph:
full_iteration; the eager systems are compared with these as variants."""

GPU_TARGETS = (
    Target("8B LoRA tokens/s vs the strongest HF + PEFT", "tokens_per_s_per_gpu",
           ("llama3-8b-lora-s4096", TARGET_SUBJECT), ">=", 1.5, reference=("llama3-8b-lora-s4096", *HF_BASELINES)),
    Target("8B LoRA peak memory vs the strongest HF + PEFT", "peak_memory_allocated",
           ("llama3-8b-lora-s4096", TARGET_SUBJECT), "<=", 0.6, reference=("llama3-8b-lora-s4096", *HF_BASELINES)),
    Target("8B LoRA MFU (measured peak)", "mfu_measured", ("llama3-8b-lora-s4096", TARGET_SUBJECT), ">=", 0.70),
    Target("1B full SFT MFU (measured peak)", "mfu_measured", ("llama3.2-1b-sft-s4096", TARGET_SUBJECT), ">=", 0.55),
    Target("3B full SFT MFU (measured peak)", "mfu_measured", ("llama3.2-3b-sft-s4096", TARGET_SUBJECT), ">=", 0.60),
    Target("1B LoRA step time vs full SFT (same batch)", "step_time_mean_s",
           ("llama3.2-1b-lora-s4096", TARGET_SUBJECT), "<=", 0.85, reference=("llama3.2-1b-sft-s4096", TARGET_SUBJECT)),
    Target("8B LoRA FP8 base tokens/s vs bf16", "tokens_per_s_per_gpu", ("llama3-8b-lora-s4096", FP8_TARGET_SUBJECT),
           ">=", 1.35, reference=("llama3-8b-lora-s4096", TARGET_SUBJECT)),
)
"""Targets of the one-GPU suites; a ratio against several baselines is checked against the strongest."""


def _one_gpu_suite(card: str) -> "Suite":
    return Suite(
        name=card,
        description=f"Llama-3 shapes on one {card.upper()}: 8B LoRA r16 (all linear layers) at seq 2k/4k/8k, "
                    "1B and 3B full SFT at seq 4k, 1B LoRA for the LoRA-vs-SFT check; bf16, packed rows; "
                    "megatron-fp8 (FP8 frozen base) on the LoRA cases",
        device="gpu", systems=ONE_GPU_SYSTEMS, warmup_steps=3, timed_steps=10,
        cases=ONE_GPU_CASES, peak_squares=(4096, 8192, 16384), peak_model_linears=True, targets=GPU_TARGETS,
        gpus=1,
    )


FP8_LOSS_CASE = "llama3-8b-lora-s4096-gb1"


def _fp8_loss_suite() -> "Suite":
    """megatron-fp8 against megatron over 200 steps of the same 8B LoRA run (one GPU, about 9 minutes with the
    peak and the model: more than one 10-minute device call holds, so a call may end after megatron and the next,
    resuming, runs megatron-fp8): one sequence per step keeps the steps short. The data is the text process: on the
    repeated sample the model memorises the data, the loss falls to about 1e-4 and relative gaps are noise.
    Expected times from the H100 (2026-12-06): start-up to the first step about 200 s on a fresh machine (the
    import of the HF weights, about 110 s, and the first compilation of the RoPE, attention and FP8 graphs, about
    60 s), less where the compiled kernels are cached from an earlier run on the machine; steps of about 0.35 s
    (bf16) and 0.38 s (FP8)."""
    case = _cases(("megatron", "megatron-fp8"), [
        (FP8_LOSS_CASE, "llama3-8b", "lora", 4096, 1, 1, (270, 290), 400),
    ])
    loss = Target("8B LoRA FP8 base loss curve vs bf16", "loss_window_gap", (FP8_LOSS_CASE, "megatron-fp8"), "<=",
                  0.01, reference=(FP8_LOSS_CASE, "megatron"), window_steps=10)
    return Suite(
        name="fp8-loss",
        description="The 8B LoRA r16 case (seq 4096) at one sequence per step, 200 timed steps: the loss curve of "
                    "precision.fp8_frozen_base against bf16's on the same weights and batches, on records of the "
                    "synthetic text process (never repeated, so the loss stays above the process's entropy rate)",
        device="gpu", systems=("megatron", "megatron-fp8"), warmup_steps=2, timed_steps=200, cases=case,
        peak_squares=(4096,), targets=(loss,), gpus=1, data_source="text-process",
    )


SUITES = {
    "h200": _one_gpu_suite("h200"),
    "h100": _one_gpu_suite("h100"),
    "fp8-loss": _fp8_loss_suite(),
    "cpu-smoke": Suite(
        name="cpu-smoke",
        description="The tiny model on CPU, 5 steps: tests the harness and the report code",
        device="cpu", systems=("megatron", "hf"), warmup_steps=2, timed_steps=3,
        cases=_cases(("megatron", "hf"), [
            ("tiny-sft-s256", "tiny", "sft", 256, 2, 4, (30, 30), 240),
            ("tiny-lora-s256", "tiny", "lora", 256, 2, 4, (30, 30), 240),
        ]),
        peak_squares=(1024,),
    ),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")
    return SUITES[name]
