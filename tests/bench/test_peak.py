import pytest

from primus_bridge.bench.peak import MatmulPeak, datasheet_peak_tflops, measure_matmul_peak
from primus_bridge.bench.suites import get_suite


def test_measured_cpu_peak_is_the_best_shape_and_median_at_most_max():
    peak = measure_matmul_peak("cpu", "fp32", [(64, 64, 64), (256, 256, 256), (128, 512, 256)], repeats=5,
                               warmup_s=0.05)
    assert 0 < peak.tflops_median <= peak.tflops_max
    assert (peak.device, peak.dtype, peak.repeats) == ("cpu", "fp32", 5)
    assert [shape for shape, _ in peak.per_shape] == [(64, 64, 64), (256, 256, 256), (128, 512, 256)]
    assert peak.tflops_median == max(tflops for _, tflops in peak.per_shape)
    assert dict(peak.per_shape)[peak.best_shape] == peak.tflops_median and peak.size == max(peak.best_shape)
    assert "3 fp32 matmul shapes" in peak.describe()


def test_a_record_from_before_shapes_still_loads_and_describes_its_square():
    old = MatmulPeak("cuda:0", "bf16", 8192, 50, 639.0, 650.0)
    assert old.describe() == "bf16 8192x8192x8192 matmul on random data"


def test_gpu_suites_time_squares_and_every_cases_linears():
    suite = get_suite("h200")
    shapes = suite.peak_shapes()
    assert shapes[:3] == ((4096, 4096, 4096), (8192, 8192, 8192), (16384, 16384, 16384))
    assert (4096, 2 * 14336, 4096) in shapes  # 8B gate+up at seq 4096, micro batch 1
    assert (4096, 4096, 14336) in shapes  # 8B down projection
    assert len(shapes) == len(set(shapes))
    assert get_suite("cpu-smoke").peak_shapes() == ((1024, 1024, 1024),)


@pytest.mark.gpu
def test_measured_gpu_bf16_peak_is_below_the_datasheet():
    import torch

    from primus_bridge.hardware import gpu_type_from_name

    peak = measure_matmul_peak("cuda:0", "bf16", [(4096, 4096, 4096), (8192, 8192, 8192)], repeats=20,
                               warmup_s=0.5)
    datasheet = datasheet_peak_tflops(gpu_type_from_name(torch.cuda.get_device_name(0)), "bf16")
    assert peak.tflops_median > 0
    if datasheet is not None:
        assert peak.tflops_median < 1.05 * datasheet


def test_datasheet_peak_only_for_known_gpus_in_bf16():
    assert datasheet_peak_tflops("h200", "bf16") == 989.4
    assert datasheet_peak_tflops("mi300x", "bf16") == 1307.4
    assert datasheet_peak_tflops(None, "fp32") is None
    assert datasheet_peak_tflops("h200", "fp32") is None


def test_a_peak_comes_back_from_its_json_record_unchanged():
    import dataclasses
    import json

    peak = MatmulPeak("cuda", "bf16", 14336, 50, 701.8, 717.7, (8192, 4096, 14336),
                      (((4096, 4096, 4096), 593.0), ((8192, 4096, 14336), 701.8)), 5.0)
    assert MatmulPeak.from_record(json.loads(json.dumps(dataclasses.asdict(peak)))) == peak
