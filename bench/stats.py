"""Pure statistics for the benchmarks: percentiles and one load level's summary. No I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


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


@dataclass
class LevelSamples:
    """Raw outcome of one closed-loop run: every successful latency (s), error count, wall seconds."""

    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds > 0 else 0.0

    def summary(self, system: str, concurrency: int) -> LevelResult:
        return summarize(system, concurrency, self.latencies_s, self.errors, self.seconds)


def pooled(system: str, concurrency: int, rounds: Sequence[LevelSamples]) -> LevelResult:
    """One level over all its rounds: latencies pooled, throughput = successes / total measured seconds."""
    return summarize(system, concurrency, [x for r in rounds for x in r.latencies_s], sum(r.errors for r in rounds),
                     sum(r.seconds for r in rounds))


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median with its spread (min, max, and the number of values): how a ratio varied across rounds."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "rounds": 0}
    return {"median": percentile(finite, 50), "min": min(finite), "max": max(finite), "rounds": len(finite)}


def round_ratios(ours: Sequence[LevelSamples], other: Sequence[LevelSamples]) -> dict[str, dict[str, float]]:
    """Per-round ratios of two systems measured in the same rounds (ours / other): throughput and p99."""
    pairs = list(zip(ours, other, strict=True))
    throughput = [a.throughput / b.throughput if b.throughput else math.inf for a, b in pairs]
    p99 = [percentile(a.latencies_s, 99) / percentile(b.latencies_s, 99)
           if a.latencies_s and b.latencies_s else math.nan for a, b in pairs]
    return {"throughput_ratio": spread(throughput), "p99_ratio": spread(p99)}
