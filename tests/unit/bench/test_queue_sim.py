"""The idealised batcher queue behind docs/performance.md's p99 reading: exact at light load, and it shows the
coalescing wait's cost under load."""

from __future__ import annotations

from bench.queue_sim import PassCost, quantile, simulate


def test_light_load_latency_is_one_pass_of_each_text():
    cost = PassCost(fixed_ms=10.0, per_text_ms=5.0, jitter=0.0)
    lengths = [1.0, 2.0, 0.5, 1.0]
    for wait in (0.0, 25.0):  # a lone text after a lone pass never waits
        assert simulate(1.0, lengths, cost, max_wait_ms=wait) == [15.0, 20.0, 12.5, 15.0]


def test_under_load_the_wait_costs_latency_and_passes_grow():
    cost = PassCost(fixed_ms=10.2, per_text_ms=13.1, jitter=0.1)
    lengths = [1.0] * 5000
    greedy = simulate(99.0, lengths, cost, max_wait_ms=0.0)
    waited = simulate(99.0, lengths, cost, max_wait_ms=25.0)
    assert quantile(greedy, 0.5) < quantile(waited, 0.5)
    assert quantile(greedy, 0.5) > 23.3  # at ~90% busy, texts share passes and queue: above one lone pass
