"""Benchmark suites as data: which model shapes, modes, lengths and batches, for which systems.

Every system in a suite trains the same case on the same tokens: same random-weight checkpoint,
same packed rows (same data file, tokenizer, seq_length and seed), same precision and batch sizes.
"""

from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict

from ..models.lora import PROJECTIONS, LoraSpec
from .results import CaseShape
from .shapes import get_shape


@dataclass(frozen=True)
class System:
    engine: str
    needs_gpu: bool
    description: str
    model_settings: tuple[tuple[str, str | bool], ...] = ()
    """`model.*` keys this system sets on every case (on top of the case's config)."""


SYSTEMS = {
    "megatron": System("megatron", True, "primus-bridge megatron engine (Megatron-Bridge finetune(); TE when present, "
                                         "else the local spec: FlexAttention with a document mask on packed rows; "
                                         "LoRA at TP 1: the chunked frozen-head loss)"),
    "hf": System("hf", False, "HF Transformers + PEFT baseline (attention: flash-attention 2 when installed, else "
                              "SDPA with a block-diagonal mask over the packed documents)"),
    "hf-flex": System("hf", False, "HF Transformers + PEFT baseline with transformers' flex_attention (a block mask "
                                   "built from the packed rows' position_ids: only blocks inside documents computed)",
                      (("attn_implementation", "flex_attention"),)),
    "hf-liger": System("hf", True, "HF Transformers + PEFT with liger-kernel (Triton RMSNorm, SwiGLU, RoPE and the "
                                   "fused linear cross-entropy: no vocabulary-wide logits) and transformers' "
                                   "flex_attention on the packed rows: what speed-minded HF users run",
                       (("attn_implementation", "flex_attention"), ("liger_kernel", True))),
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


@dataclass(frozen=True)
class Target:
    """A benchmark target: metric of (case, system), optionally divided by the same metric of a reference:
    (case, system, ...); with several systems, the strongest baseline on this metric, i.e. the one whose
    ratio is hardest to meet among those that ran."""

    title: str
    metric: Literal["tokens_per_s_per_gpu", "peak_memory_allocated", "mfu_measured", "step_time_mean_s"]
    subject: tuple[str, str]
    op: Literal[">=", "<="]
    threshold: float
    reference: tuple[str, ...] | None = None


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


def _cases(rows: list[tuple]) -> tuple[BenchCase, ...]:
    """Rows of (name, shape, mode, seq_length, micro_batch, global_batch, (megatron s, hf s, hf-flex s, hf-liger s),
    timeout_s)."""
    fields = ("name", "shape", "mode", "seq_length", "micro_batch_size", "global_batch_size", "expected_s",
              "timeout_s")
    return tuple(BenchCase(**dict(zip(fields, row[:6] + (tuple(zip(SYSTEMS, row[6])), row[7])))) for row in rows)


# Smallest shapes first (an early, cheap check that both systems run), the targets' cases before the
# rest, and the 1B LoRA case (LoRA vs full SFT on one model) last. A shape's random-weight checkpoint
# and the engines' import of it are removed after its last case in the run. The 8B sequence sweep keeps
# the tokens per step fixed (32768). Expected times are per system, from the H200 runs: start-up, model
# load (the megatron engine imports the HF weights once per shape: the first case of a shape pays it),
# 13 steps, from the H200 runs' wall times: 1B SFT 153 / 48 s, 3B SFT 120 / 54 s, the first 8B case
# 223 / 144 s (profiled, about 40 / 60 s of it), later 8B cases 91-120 / 69-107 s, 1B LoRA 103 / 40 s;
# hf-flex: the hf times plus the compilation of the flex kernels; hf-liger: hf-flex's plus the Triton kernels'.
ONE_GPU_CASES = _cases([
    # name                     shape          mode    seq  micro global (megatron, hf, hf-flex, hf-liger) timeout
    ("llama3.2-1b-sft-s4096",  "llama3.2-1b", "sft",  4096, 2, 16, (160, 60, 90, 100), 300),
    ("llama3.2-3b-sft-s4096",  "llama3.2-3b", "sft",  4096, 1, 8, (160, 70, 100, 110), 360),
    ("llama3-8b-lora-s4096",   "llama3-8b",   "lora", 4096, 1, 8, (240, 110, 140, 150), 480),
    ("llama3-8b-lora-s8192",   "llama3-8b",   "lora", 8192, 1, 4, (160, 120, 150, 160), 420),
    ("llama3-8b-lora-s2048",   "llama3-8b",   "lora", 2048, 2, 16, (160, 100, 130, 140), 420),
    ("llama3.2-1b-lora-s4096", "llama3.2-1b", "lora", 4096, 2, 16, (130, 60, 90, 100), 300),
])

HF_BASELINES = ("hf", "hf-flex", "hf-liger")

GPU_TARGETS = (
    Target("8B LoRA tokens/s vs the strongest HF + PEFT", "tokens_per_s_per_gpu", ("llama3-8b-lora-s4096", "megatron"),
           ">=", 1.5, reference=("llama3-8b-lora-s4096", *HF_BASELINES)),
    Target("8B LoRA peak memory vs the strongest HF + PEFT", "peak_memory_allocated",
           ("llama3-8b-lora-s4096", "megatron"), "<=", 0.6, reference=("llama3-8b-lora-s4096", *HF_BASELINES)),
    Target("8B LoRA MFU (measured peak)", "mfu_measured", ("llama3-8b-lora-s4096", "megatron"), ">=", 0.70),
    Target("1B full SFT MFU (measured peak)", "mfu_measured", ("llama3.2-1b-sft-s4096", "megatron"), ">=", 0.55),
    Target("3B full SFT MFU (measured peak)", "mfu_measured", ("llama3.2-3b-sft-s4096", "megatron"), ">=", 0.60),
    Target("1B LoRA step time vs full SFT (same batch)", "step_time_mean_s", ("llama3.2-1b-lora-s4096", "megatron"),
           "<=", 0.85, reference=("llama3.2-1b-sft-s4096", "megatron")),
)
"""Targets of the one-GPU suites; a ratio against several baselines is checked against the strongest."""


def _one_gpu_suite(card: str) -> "Suite":
    return Suite(
        name=card,
        description=f"Llama-3 shapes on one {card.upper()}: 8B LoRA r16 (all linear layers) at seq 2k/4k/8k, "
                    "1B and 3B full SFT at seq 4k, 1B LoRA for the LoRA-vs-SFT check; bf16, packed rows",
        device="gpu", systems=("megatron", *HF_BASELINES), warmup_steps=3, timed_steps=10,
        cases=ONE_GPU_CASES, peak_squares=(4096, 8192, 16384), peak_model_linears=True, targets=GPU_TARGETS,
        gpus=1,
    )


SUITES = {
    "h200": _one_gpu_suite("h200"),
    "h100": _one_gpu_suite("h100"),
    "cpu-smoke": Suite(
        name="cpu-smoke",
        description="The tiny model on CPU, 5 steps: tests the harness and the report code",
        device="cpu", systems=("megatron", "hf"), warmup_steps=2, timed_steps=3,
        cases=_cases([
            ("tiny-sft-s256", "tiny", "sft", 256, 2, 4, (30, 30, 30), 240),
            ("tiny-lora-s256", "tiny", "lora", 256, 2, 4, (30, 30, 30), 240),
        ]),
        peak_squares=(1024,),
    ),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")
    return SUITES[name]
