"""DynamicBatcher and plan_batches: coalescing, token budget, max size, full queue, dropped texts, failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from service.engine.batcher import DynamicBatcher, plan_batches, plan_packed
from service.errors import EncoderFailed, NotReady, Overloaded
from service.metrics import Metrics

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


class RecordingEncode:
    """encode_batch for the batcher: payloads are strings; records batches; can block or fail."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, payloads: list[Any]) -> list[str]:
        self.entered.set()
        self.gate.wait(timeout=10)
        self.batches.append(list(payloads))
        if self.fail_on is not None and self.fail_on in payloads:
            raise RuntimeError("boom")
        return [f"v:{p}" for p in payloads]


def make(encode: Callable[[list[Any]], Any], **overrides: Any) -> DynamicBatcher:
    options = {"max_batch_tokens": 100, "max_batch_size": 8, "max_wait_ms": 20, "max_queue": 64, "metrics": Metrics()}
    options.update(overrides)
    return DynamicBatcher(encode, **options)


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


def test_plan_sorts_by_length_and_respects_budget_and_size():
    lengths = [30, 5, 10, 40, 5, 10]
    plan = plan_batches(lengths, max_batch_tokens=40, max_batch_size=3)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    for batch in plan:
        assert len(batch) <= 3
        assert len(batch) * max(lengths[i] for i in batch) <= 40
    flat = [lengths[i] for batch in plan for i in batch]
    assert flat == sorted(flat)


def test_plan_gives_an_oversized_item_its_own_batch():
    assert plan_batches([500, 1], max_batch_tokens=100, max_batch_size=8) == [[1], [0]]


def test_concurrent_submissions_coalesce_into_one_batch():
    encode = RecordingEncode()

    async def scenario() -> list[Any]:
        batcher = make(encode, max_wait_ms=200)
        await batcher.start()
        # Three "requests" arrive within the wait window.
        futures = [batcher.submit([(f"t{i}", 3)]) for i in range(3)]
        results = await asyncio.gather(*(f for fs in futures for f in fs))
        await batcher.stop()
        return results

    assert run(scenario()) == ["v:t0", "v:t1", "v:t2"]
    assert len(encode.batches) == 1


def test_batches_respect_token_budget_and_max_size():
    encode = RecordingEncode()
    lengths = {f"t{i}": n for i, n in enumerate([10, 10, 10, 10, 50, 50, 3, 3, 3, 3, 3])}

    async def scenario() -> None:
        batcher = make(encode, max_batch_tokens=100, max_batch_size=4, max_wait_ms=100)
        await batcher.start()
        futures = batcher.submit(list(lengths.items()))
        await asyncio.gather(*futures)
        await batcher.stop()

    run(scenario())
    assert sorted(p for b in encode.batches for p in b) == sorted(lengths)
    for batch in encode.batches:
        assert len(batch) <= 4
        assert len(batch) * max(lengths[p] for p in batch) <= 100


def test_full_queue_is_refused_and_counted():
    encode = RecordingEncode()
    encode.gate.clear()  # the forward pass blocks, so texts pile up
    metrics = Metrics()

    async def scenario() -> None:
        batcher = make(encode, max_queue=4, max_wait_ms=0, metrics=metrics)
        await batcher.start()
        first = batcher.submit([("a", 1)])
        await wait_until(encode.entered.is_set)  # "a" is in the forward pass, no longer queued
        queued = batcher.submit([("b", 1), ("c", 1), ("d", 1), ("e", 1)])
        assert batcher.depth == 4
        with pytest.raises(Overloaded, match="FLIPMATCH_BATCHING__MAX_QUEUE"):
            batcher.submit([("f", 1)])
        encode.gate.set()
        await asyncio.gather(*first, *queued)
        assert batcher.depth == 0
        await batcher.stop()

    run(scenario())
    assert metrics.queue_rejections._value.get() == 1


def test_cancelled_texts_are_dropped_before_compute():
    encode = RecordingEncode()
    encode.gate.clear()
    metrics = Metrics()

    async def scenario() -> None:
        batcher = make(encode, max_wait_ms=0, metrics=metrics)
        await batcher.start()
        first = batcher.submit([("busy", 1)])
        await wait_until(encode.entered.is_set)
        gone = batcher.submit([("gone-1", 1), ("gone-2", 1)])
        kept = batcher.submit([("kept", 1)])
        for future in gone:  # the client disconnected: its request task cancels its futures
            future.cancel()
        encode.gate.set()
        assert await asyncio.gather(*first, *kept) == ["v:busy", "v:kept"]
        await batcher.stop()

    run(scenario())
    computed = [p for b in encode.batches for p in b]
    assert "gone-1" not in computed and "gone-2" not in computed
    assert metrics.dropped_texts._value.get() == 2


def test_a_failing_batch_fails_only_its_futures_and_the_loop_keeps_serving():
    encode = RecordingEncode(fail_on="bad")
    metrics = Metrics()

    async def scenario() -> None:
        batcher = make(encode, max_batch_size=1, max_wait_ms=0, metrics=metrics)  # one text per batch
        await batcher.start()
        bad, good = batcher.submit([("bad", 1), ("good", 1)])
        with pytest.raises(EncoderFailed):
            await bad
        assert await good == "v:good"
        later = batcher.submit([("later", 1)])
        assert await later[0] == "v:later"
        await batcher.stop()

    run(scenario())
    assert metrics.batch_failures.labels("RuntimeError")._value.get() == 1


def test_submit_when_room_waits_instead_of_refusing():
    encode = RecordingEncode()
    encode.gate.clear()

    async def scenario() -> None:
        batcher = make(encode, max_queue=2, max_wait_ms=0)
        await batcher.start()
        first = batcher.submit([("a", 1)])
        await wait_until(encode.entered.is_set)
        batcher.submit([("b", 1), ("c", 1)])  # queue now full
        waiting = asyncio.ensure_future(batcher.submit_when_room([("d", 1)]))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        encode.gate.set()
        later = await asyncio.wait_for(waiting, 5)
        assert await later[0] == "v:d"
        await asyncio.gather(*first)
        await batcher.stop()

    run(scenario())


def test_stop_answers_every_pending_text():
    encode = RecordingEncode()
    encode.gate.clear()

    async def scenario() -> None:
        batcher = make(encode, max_wait_ms=0)
        await batcher.start()
        in_flight = batcher.submit([("a", 1)])
        await wait_until(encode.entered.is_set)
        queued = batcher.submit([("b", 1)])
        encode.gate.set()
        await batcher.stop()
        for future in [*in_flight, *queued]:
            assert future.done()
            with pytest.raises(NotReady):
                future.result()

    run(scenario())


def test_lone_requests_skip_the_window_and_a_busy_round_waits_for_its_clients():
    encode = RecordingEncode()

    async def scenario() -> None:
        batcher = make(encode, max_wait_ms=60_000)  # a window no test could sit out
        await batcher.start()
        for i in range(3):  # sequential lone requests (concurrency 1): answered without waiting the window
            (future,) = batcher.submit([(f"lone{i}", 3)])
            assert await asyncio.wait_for(future, timeout=10) == f"v:lone{i}"
        first = batcher.submit([(f"a{i}", 3) for i in range(3)])  # a round of 3 texts
        await asyncio.gather(*first)
        # Next round: the first text waits for the other two (the last round's size), then goes at once.
        (early,) = batcher.submit([("b0", 3)])
        await asyncio.sleep(0.05)
        assert not early.done()
        rest = batcher.submit([("b1", 3), ("b2", 3)])
        await asyncio.wait_for(asyncio.gather(early, *rest), timeout=10)
        await batcher.stop()

    run(scenario())
    assert encode.batches[-1] == ["b0", "b1", "b2"]
    assert [len(b) for b in encode.batches[:3]] == [1, 1, 1]


def _padded_cost(plan: list[list[int]], lengths: list[int], overhead: float) -> float:
    return sum(overhead + len(b) * max(lengths[i] for i in b) for b in plan)


def test_plan_minimises_padding_plus_per_pass_overhead():
    import itertools
    import random

    rng = random.Random(0)
    for _ in range(30):
        lengths = [rng.randint(3, 48) for _ in range(rng.randint(1, 9))]
        for overhead in (0.0, 8.0, 32.0, 500.0):
            plan = plan_batches(lengths, max_batch_tokens=10_000, max_batch_size=64, batch_overhead_tokens=overhead)
            assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
            # brute force over the cut points of the length-sorted order: the plan is optimal
            order = sorted(range(len(lengths)), key=lambda i: lengths[i])
            best = min(
                _padded_cost(
                    [order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)), strict=True)], lengths, overhead
                )
                for k in range(len(order))
                for cuts in itertools.combinations(range(1, len(order)), k)
            )
            assert _padded_cost(plan, lengths, overhead) == pytest.approx(best)


def test_plan_splits_mixed_lengths_only_when_the_padding_saved_beats_the_overhead():
    lengths = [5] * 10 + [40] * 2  # 12 texts: one batch pads ten short texts to 40 tokens
    assert len(plan_batches(lengths, max_batch_tokens=8192, max_batch_size=64, batch_overhead_tokens=32)) == 2
    assert len(plan_batches(lengths, max_batch_tokens=8192, max_batch_size=64, batch_overhead_tokens=1000)) == 1
    assert plan_batches([7, 7, 7], max_batch_tokens=8192, max_batch_size=64, batch_overhead_tokens=0) == [[0, 1, 2]]


def test_next_pass_is_queued_while_the_current_one_runs():
    """The worker never waits on the event loop between the passes of one window: the second pass is handed to
    it while the first is still computing."""
    encode = RecordingEncode()
    encode.gate.clear()  # the first pass blocks until the test has seen the second one queued

    async def scenario() -> list[str]:
        batcher = make(encode, max_batch_size=2, max_wait_ms=50, batch_overhead_tokens=0.0)
        submitted: list[object] = []
        original = batcher._executor.submit

        def recording_submit(fn: Any, *args: Any) -> Any:
            submitted.append(args)
            return original(fn, *args)

        batcher._executor.submit = recording_submit  # type: ignore[method-assign]
        await batcher.start()
        # four texts, two lengths, at most two a pass: one window, two passes
        futures = batcher.submit([("a", 1), ("b", 1), ("c", 9), ("d", 9)])
        await wait_until(encode.entered.is_set)
        await wait_until(lambda: len(submitted) == 2)  # queued while the first pass is blocked
        assert not any(f.done() for f in futures)
        encode.gate.set()
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return results

    assert run(scenario()) == ["v:a", "v:b", "v:c", "v:d"]
    assert encode.batches == [["a", "b"], ["c", "d"]]


# -- packed passes (one unpadded row per pass) and concurrent forward workers --


def test_packed_plan_takes_the_fewest_passes_and_the_smallest_largest_one():
    import itertools
    import random

    rng = random.Random(1)
    for _ in range(150):
        lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 9))]
        budget, size = rng.choice([64, 128, 384]), rng.choice([2, 4, 64])
        plan = plan_packed(lengths, max_pass_tokens=budget, max_batch_size=size)
        assert [i for p in plan for i in p] == list(range(len(lengths)))  # every text once, arrival order kept

        def valid(split: list[list[int]], lengths: list[int] = lengths, budget: int = budget, size: int = size) -> bool:
            return all(len(p) <= size and (len(p) == 1 or sum(lengths[i] for i in p) <= budget)  # alone: may exceed
                       for p in split)

        assert valid(plan)
        # brute force over every ordered split: fewest passes first, then the smallest largest pass
        n = len(lengths)
        splits = [[list(range(a, b)) for a, b in zip((0, *cuts), (*cuts, n), strict=True)]
                  for k in range(n) for cuts in itertools.combinations(range(1, n), k)]
        best = min((len(s), max(sum(lengths[i] for i in p) for p in s)) for s in splits if valid(s))
        assert (len(plan), max(sum(lengths[i] for i in p) for p in plan)) == best


def test_packed_plan_balances_the_passes():
    # 10 texts of 30 tokens under a 240-token budget: two passes of 5 (150 tokens), not 8 + 2
    assert [len(p) for p in plan_packed([30] * 10, max_pass_tokens=240, max_batch_size=64)] == [5, 5]
    assert plan_packed([500, 3], max_pass_tokens=384, max_batch_size=64) == [[0], [1]]
    assert plan_packed([], max_pass_tokens=384, max_batch_size=64) == []


def test_packed_batcher_sends_mixed_lengths_in_one_pass():
    encode = RecordingEncode()

    async def scenario() -> None:
        metrics = Metrics()
        batcher = make(encode, max_wait_ms=200, max_packed_tokens=384, batch_overhead_tokens=0.0, metrics=metrics)
        await batcher.start()
        # Padded planning with no overhead would give each length its own pass; packed, there is no padding.
        await asyncio.gather(*batcher.submit([("a", 3), ("b", 40), ("c", 9)]))
        await batcher.stop()
        assert "flipmatch_batch_tokens_sum 52.0" in metrics.render().decode()  # 3 + 40 + 9, no padding

    run(scenario())
    assert encode.batches == [["a", "b", "c"]]


def test_two_workers_run_two_passes_at_once():
    both = threading.Barrier(2, timeout=10)  # each pass waits until the other one has started too
    batches: list[list[str]] = []

    def encode(payloads: list[Any]) -> list[str]:
        both.wait()
        batches.append(list(payloads))
        return [f"v:{p}" for p in payloads]

    async def scenario() -> None:
        batcher = make(encode, max_wait_ms=0, workers=2)
        await batcher.start()
        first = batcher.submit([("a", 1)])
        await asyncio.sleep(0.05)  # the first pass is running: a second text gets the idle worker
        second = batcher.submit([("b", 1)])
        assert await asyncio.wait_for(asyncio.gather(*first, *second), timeout=10) == ["v:a", "v:b"]
        await batcher.stop()

    run(scenario())
    assert sorted(map(tuple, batches)) == [("a",), ("b",)]


def test_with_every_worker_busy_the_queue_grows_into_the_next_pass():
    encode = RecordingEncode()
    encode.gate.clear()

    async def scenario() -> None:
        batcher = make(encode, max_wait_ms=0, workers=1)
        await batcher.start()
        first = batcher.submit([("a", 1)])
        await wait_until(encode.entered.is_set)
        later = [batcher.submit([(f"b{i}", 1)]) for i in range(3)]  # arrive one by one while the worker is busy
        await asyncio.sleep(0.05)
        assert batcher.depth == 3  # not drained into passes of one: they wait for the worker
        encode.gate.set()
        await asyncio.wait_for(asyncio.gather(*first, *(f for fs in later for f in fs)), timeout=10)
        await batcher.stop()

    run(scenario())
    assert encode.batches == [["a"], ["b0", "b1", "b2"]]


def test_worker_threads_run_the_thread_setup_once_each():
    seen: list[str] = []

    async def scenario() -> None:
        batcher = make(lambda p: [f"v:{x}" for x in p], max_wait_ms=0, workers=2,
                       thread_init=lambda: seen.append(threading.current_thread().name))
        await batcher.start()
        for i in range(4):
            await asyncio.gather(*batcher.submit([(f"t{i}", 1)]))
        await batcher.stop()

    run(scenario())
    assert 1 <= len(seen) <= 2 and len(set(seen)) == len(seen)
    assert all(name.startswith("flipmatch-forward") for name in seen)


def test_stop_answers_the_texts_of_passes_still_waiting_for_a_worker():
    """One window planned into three passes on one worker, the first one blocked: stopping answers all three
    (nothing drained is left hanging, whether its pass runs, waits in the worker's queue or waits for a worker)."""
    encode = RecordingEncode()
    encode.gate.clear()

    async def scenario() -> None:
        batcher = make(encode, max_wait_ms=0, max_batch_size=1, workers=1)
        await batcher.start()
        futures = batcher.submit([("b", 1), ("c", 1), ("d", 1)])  # drained together: three passes of one
        await wait_until(encode.entered.is_set)
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(batcher.stop())
        await asyncio.sleep(0.05)
        encode.gate.set()  # let the running pass end so the worker can shut down
        await asyncio.wait_for(stopping, timeout=10)
        assert all(future.done() for future in futures)
        assert all(isinstance(future.exception(), NotReady) for future in futures)

    run(scenario())
