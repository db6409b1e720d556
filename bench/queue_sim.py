"""An idealised model of the batcher under an open loop: evenly spaced arrivals, `workers` forward passes at once,
each pass costing `fixed_ms + per_text_ms x (its texts' lengths / the mean length)`, with and without the
adaptive coalescing wait. Nothing else shares the CPU, so it is a lower bound on the served tail.

    python -m bench.queue_sim --data-dir ../shared/data                      # the measured pass costs
    python -m bench.queue_sim --data-dir ../shared/data --fixed-ms 7 --per-text-ms 12

Text lengths are Banking77 test questions' word counts (+3), a stand-in for their token counts' spread.
The ratio printed is the search target's: p99 under load over the unloaded p50 (one mean-length pass + overhead).
"""

from __future__ import annotations

import argparse
import csv
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PassCost:
    fixed_ms: float
    per_text_ms: float
    jitter: float = 0.1  # relative standard deviation of a pass's time

    def ms(self, relative_lengths: list[float], rng: random.Random) -> float:
        base = self.fixed_ms + self.per_text_ms * sum(relative_lengths)
        return max(0.1, base * (1.0 + rng.gauss(0.0, self.jitter)))


def simulate(rate_per_s: float, lengths: list[float], cost: PassCost, *, workers: int = 2, max_wait_ms: float = 0.0,
             max_batch: int = 64, seed: int = 0) -> list[float]:
    """Latency (ms, queueing + pass) of each of `len(lengths)` evenly spaced arrivals. A free worker takes what is
    queued; with `max_wait_ms` > 0 the first text first waits, as the batcher does, until as many texts are queued
    as the last pass took or the wait is over."""
    rng = random.Random(seed)
    gap = 1000.0 / rate_per_s
    arrivals = [i * gap for i in range(len(lengths))]
    free_at = [0.0] * workers
    queued: deque[int] = deque()
    latencies = [0.0] * len(lengths)
    now, nxt, last_taken = 0.0, 0, 1
    while nxt < len(arrivals) or queued:
        worker = min(range(workers), key=free_at.__getitem__)
        now = max(now, free_at[worker])
        if not queued:
            now = max(now, arrivals[nxt])
        while nxt < len(arrivals) and arrivals[nxt] <= now:
            queued.append(nxt)
            nxt += 1
        if max_wait_ms > 0:
            deadline = arrivals[queued[0]] + max_wait_ms
            while len(queued) < last_taken and nxt < len(arrivals) and arrivals[nxt] <= deadline:
                now = max(now, arrivals[nxt])
                queued.append(nxt)
                nxt += 1
            if len(queued) < last_taken:
                now = max(now, deadline)
        taken = [queued.popleft() for _ in range(min(len(queued), max_batch))]
        last_taken = len(taken)
        free_at[worker] = now + cost.ms([lengths[i] for i in taken], rng)
        for i in taken:
            latencies[i] = free_at[worker] - arrivals[i]
    return latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def relative_lengths(data_dir: Path, count: int, seed: int = 0) -> list[float]:
    with (data_dir / "banking77" / "test.csv").open(newline="", encoding="utf-8") as fh:
        words = [len(row["text"].split()) + 3 for row in csv.DictReader(fh)]
    mean = sum(words) / len(words)
    rng = random.Random(seed)
    return [rng.choice(words) / mean for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    # Defaults: the session-16 fit of served passes on machine A (docs/performance.md, "Why the p99 target ...").
    parser.add_argument("--fixed-ms", type=float, default=10.2)
    parser.add_argument("--per-text-ms", type=float, default=13.1)
    parser.add_argument("--overhead-ms", type=float, default=1.8, help="HTTP, search and pipe, outside the pass")
    parser.add_argument("--jitter", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rates", type=float, nargs="+", default=[90.0, 99.0, 110.0])
    parser.add_argument("--waits-ms", type=float, nargs="+", default=[0.0, 25.0])
    parser.add_argument("--arrivals", type=int, default=20000)
    args = parser.parse_args()
    cost = PassCost(args.fixed_ms, args.per_text_ms, args.jitter)
    lengths = relative_lengths(args.data_dir, args.arrivals)
    unloaded = args.fixed_ms + args.per_text_ms + args.overhead_ms
    print(f"pass {args.fixed_ms} ms + {args.per_text_ms} ms per text, {args.workers} workers; "
          f"unloaded p50 {unloaded:.1f} ms")
    print("| req/s | wait ms | p50 ms | p99 ms | p99 / unloaded p50 |\n|---:|---:|---:|---:|---:|")
    for rate in args.rates:
        for wait in args.waits_ms:
            lat = [x + args.overhead_ms for x in simulate(rate, lengths, cost, workers=args.workers,
                                                         max_wait_ms=wait)]
            p99 = quantile(lat, 0.99)
            print(f"| {rate:.0f} | {wait:g} | {quantile(lat, 0.5):.1f} | {p99:.1f} | {p99 / unloaded:.2f}x |")


if __name__ == "__main__":
    main()
