"""From a run's raw step times and losses to the reported numbers."""

from .results import CaseInfo, RunMetrics, SystemRun
from .stats import step_stats


def compute_metrics(run: SystemRun, case: CaseInfo, warmup_steps: int, measured_peak_tflops: float | None,
                    datasheet_peak_tflops: float | None) -> RunMetrics:
    """Throughput from the mean timed step (total tokens over total time), MFU against both peaks."""
    if run.tokens_per_step is not None and run.tokens_per_step != case.tokens_per_step:
        raise ValueError(f"{run.system} on {case.name} ran {run.tokens_per_step} tokens per step; the case defines "
                         f"{case.tokens_per_step} (global batch {case.global_batch_size} x seq {case.seq_length})")
    stats = step_stats(run.step_times, warmup_steps)
    tokens_per_s_per_gpu = case.tokens_per_step / stats.mean_s / max(run.gpus, 1)
    tflops = case.flops_per_token * tokens_per_s_per_gpu / 1e12
    return RunMetrics(
        warmup_steps=warmup_steps,
        timed_steps=stats.timed_steps,
        step_time_mean_s=stats.mean_s,
        step_time_p50_s=stats.p50_s,
        step_time_p90_s=stats.p90_s,
        tokens_per_s_per_gpu=tokens_per_s_per_gpu,
        model_tflops_per_gpu=tflops,
        mfu_measured=tflops / measured_peak_tflops if measured_peak_tflops else None,
        mfu_datasheet=tflops / datasheet_peak_tflops if datasheet_peak_tflops else None,
        loss_first=run.losses[0] if run.losses else None,
        loss_last=run.losses[-1] if run.losses else None,
    )
