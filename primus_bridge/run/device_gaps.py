"""Where a profiled window left the GPU idle, and what the host was doing meanwhile.

A step can be slower than its kernels for reasons no operation table shows: device syncs, host-side
Python between launches, data loading. This reads the profiler's raw events: the union of the
device's kernel/memcpy/memset intervals gives its busy time; the longest idle gaps are listed with the
host operations (including CUDA/HIP runtime calls such as a stream synchronize) that overlap them most.
"""

from dataclasses import dataclass, field

MIN_GAP_NS = 50_000
HOST_NAMES_PER_GAP = 4


@dataclass(frozen=True)
class Interval:
    name: str
    start_ns: int
    end_ns: int


@dataclass
class Gap:
    start_ns: int
    end_ns: int
    host: list[tuple[str, int]] = field(default_factory=list)
    """(host operation, ns of it inside the gap), longest first."""

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass
class DeviceTimeline:
    start_ns: int
    window_ns: int
    busy_ns: int
    gaps: list[Gap]
    syncs: dict[str, tuple[int, int]]
    """Host synchronisation calls: name -> (count, total ns)."""

    @property
    def busy_fraction(self) -> float:
        return self.busy_ns / self.window_ns if self.window_ns else 0.0


def merged(intervals: list[Interval]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for item in sorted(intervals, key=lambda i: i.start_ns):
        if spans and item.start_ns <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], item.end_ns))
        else:
            spans.append((item.start_ns, item.end_ns))
    return spans


def _host_in(gap: Gap, host: list[Interval]) -> list[tuple[str, int]]:
    inside: dict[str, int] = {}
    for op in host:
        if op.name.startswith("ProfilerStep"):  # the window itself
            continue
        overlap = min(op.end_ns, gap.end_ns) - max(op.start_ns, gap.start_ns)
        if overlap > 0:
            inside[op.name] = inside.get(op.name, 0) + overlap
    return sorted(inside.items(), key=lambda kv: -kv[1])[:HOST_NAMES_PER_GAP]


def is_sync(name: str) -> bool:
    """A host call that waits for the device: a synchronize, or a blocking (non-Async) memcpy."""
    blocking_copy = name.startswith(("cudaMemcpy", "hipMemcpy")) and "Async" not in name
    return "ynchronize" in name or blocking_copy


def device_timeline(device: list[Interval], host: list[Interval], top_gaps: int = 15) -> DeviceTimeline:
    """Busy time, the `top_gaps` longest idle gaps (≥ 50 µs) and the host's sync calls, over the window
    from the first to the last event."""
    everything = device + host
    if not everything:
        return DeviceTimeline(0, 0, 0, [], {})
    start, end = min(i.start_ns for i in everything), max(i.end_ns for i in everything)
    spans = merged(device)
    busy = sum(b - a for a, b in spans)
    edges = [start, *[t for span in spans for t in span], end]
    gaps = [Gap(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a >= MIN_GAP_NS]
    gaps = sorted(gaps, key=lambda g: -g.duration_ns)[:top_gaps]
    for gap in gaps:
        gap.host = _host_in(gap, host)
    syncs: dict[str, tuple[int, int]] = {}
    for op in host:
        if is_sync(op.name):
            count, total = syncs.get(op.name, (0, 0))
            syncs[op.name] = (count + 1, total + op.end_ns - op.start_ns)
    return DeviceTimeline(start, end - start, busy, gaps, syncs)


def summary(timeline: DeviceTimeline) -> dict:
    """The window's numbers as data (gaps-rank<R>.json beside the text): how long, how busy, how many host syncs."""
    return {"window_ms": timeline.window_ns / 1e6, "busy_ms": timeline.busy_ns / 1e6,
            "busy_fraction": timeline.busy_fraction,
            "host_syncs": sum(count for count, _ in timeline.syncs.values()),
            "host_sync_ms": sum(total for _, total in timeline.syncs.values()) / 1e6}


def render(timeline: DeviceTimeline) -> str:
    if not timeline.window_ns:
        return "no events recorded\n"
    lines = [f"window {timeline.window_ns / 1e6:.1f} ms, device busy {timeline.busy_ns / 1e6:.1f} ms "
             f"({timeline.busy_fraction:.1%}), idle {(timeline.window_ns - timeline.busy_ns) / 1e6:.1f} ms",
             "", "host synchronisations: " + (", ".join(
                 f"{name} x{count} ({total / 1e6:.1f} ms)" for name, (count, total) in
                 sorted(timeline.syncs.items(), key=lambda kv: -kv[1][1])) or "none"),
             "", f"longest device idle gaps (>= {MIN_GAP_NS / 1000:.0f} us), with the host operations inside them:"]
    for gap in timeline.gaps:
        host = "; ".join(f"{name} {ns / 1e6:.2f} ms" for name, ns in gap.host) or "-"
        lines.append(f"  at +{(gap.start_ns - timeline.start_ns) / 1e6:9.1f} ms  "
                     f"{gap.duration_ns / 1e6:8.2f} ms  {host}")
    return "\n".join(lines) + "\n"
