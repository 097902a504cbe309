import pytest

from primus_bridge.bench.peak import datasheet_peak_tflops, measure_matmul_peak


def test_measured_cpu_peak_is_positive_and_median_at_most_max():
    peak = measure_matmul_peak("cpu", "fp32", 256, repeats=5, warmup_s=0.05)
    assert 0 < peak.tflops_median <= peak.tflops_max
    assert (peak.device, peak.dtype, peak.size, peak.repeats) == ("cpu", "fp32", 256, 5)


@pytest.mark.gpu
def test_measured_gpu_bf16_peak_is_below_the_datasheet():
    import torch

    from primus_bridge.hardware import gpu_type_from_name

    peak = measure_matmul_peak("cuda:0", "bf16", 4096, repeats=20, warmup_s=0.5)
    datasheet = datasheet_peak_tflops(gpu_type_from_name(torch.cuda.get_device_name(0)), "bf16")
    assert peak.tflops_median > 0
    if datasheet is not None:
        assert peak.tflops_median < 1.05 * datasheet


def test_datasheet_peak_only_for_known_gpus_in_bf16():
    assert datasheet_peak_tflops("h200", "bf16") == 989.4
    assert datasheet_peak_tflops("mi300x", "bf16") == 1307.4
    assert datasheet_peak_tflops(None, "fp32") is None
    assert datasheet_peak_tflops("h200", "fp32") is None
