"""Busy time and idle gaps of a device timeline, from hand-placed intervals."""

import pytest

from primus_bridge.run.device_gaps import Interval, device_timeline, render, summary

MS = 1_000_000


def test_busy_time_gaps_and_the_host_work_inside_them():
    device = [Interval("gemm", 0, 4 * MS), Interval("gemm", 3 * MS, 5 * MS), Interval("rope", 9 * MS, 10 * MS),
              Interval("tiny", 10 * MS + 10_000, 10 * MS + 20_000)]
    host = [Interval("ProfilerStep#3", 0, 12 * MS), Interval("cudaStreamSynchronize", 5 * MS, 8 * MS),
            Interval("aten::item", 5 * MS, 8 * MS + 500_000), Interval("cudaLaunchKernel", 8 * MS + 900_000, 9 * MS)]
    timeline = device_timeline(device, host)
    assert timeline.window_ns == 12 * MS
    assert timeline.busy_ns == 5 * MS + MS + 10_000  # overlapping kernels counted once
    # the 10 us gap between rope and tiny is below the threshold; the tail after the last kernel counts
    assert [(g.start_ns, g.duration_ns) for g in timeline.gaps] == \
        [(5 * MS, 4 * MS), (10 * MS + 20_000, 2 * MS - 20_000)]
    assert timeline.gaps[0].host == [("aten::item", 3 * MS + 500_000), ("cudaStreamSynchronize", 3 * MS),
                                     ("cudaLaunchKernel", 100_000)]
    assert timeline.syncs == {"cudaStreamSynchronize": (1, 3 * MS)}
    text = render(timeline)
    assert "device busy 6.0 ms (50.1%)" in text and "cudaStreamSynchronize x1 (3.0 ms)" in text
    assert "4.00 ms  aten::item 3.50 ms; cudaStreamSynchronize 3.00 ms" in text
    assert summary(timeline) == {"window_ms": 12.0, "busy_ms": 6.01, "busy_fraction": pytest.approx(6.01 / 12),
                                 "host_syncs": 1, "host_sync_ms": 3.0}


def test_nothing_recorded():
    assert render(device_timeline([], [])) == "no events recorded\n"
