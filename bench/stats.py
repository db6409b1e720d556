"""Pure statistics for the benchmarks: percentiles and one load level's summary. No I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]. NaN for no values."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside [0, 100]")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class LevelResult:
    """One (system, concurrency) load level. Latencies in milliseconds; throughput in requests/s."""

    system: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(system: str, concurrency: int, latencies_s: Sequence[float], errors: int, seconds: float) -> LevelResult:
    """Throughput counts successful requests only; percentiles are over successful requests."""
    ms = [x * 1000 for x in latencies_s]
    return LevelResult(system, concurrency, len(ms) + errors, errors, seconds,
                       len(ms) / seconds if seconds > 0 else 0.0,
                       percentile(ms, 50), percentile(ms, 95), percentile(ms, 99))
