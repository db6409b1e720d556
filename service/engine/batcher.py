"""DynamicBatcher: coalesce texts from concurrent requests into forward passes under a token budget.

It knows "a function that encodes a batch of payloads", never torch or HTTP. The queue is bounded (Overloaded when
full); each drained window is split into batches of similar length at the least modelled cost (padded tokens plus a
per-pass overhead), within a padded-token budget and a count, or, when the encoder packs a pass's texts into one
unpadded row, into the fewest passes within a packed-token budget; a text whose future was cancelled (client gone) is
dropped before compute; a failing batch fails only its own futures and the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from service.errors import EncoderFailed, NotReady, Overloaded
from service.metrics import Metrics

logger = logging.getLogger(__name__)

EncodeBatch = Callable[[list[Any]], Sequence[Any]]


@dataclass(eq=False)
class PendingText:
    """One queued text: its opaque payload (tokens), its token count and the future its request awaits."""

    payload: Any
    n_tokens: int
    future: asyncio.Future[Any]
    enqueued_at: float = field(default_factory=time.monotonic)


def plan_batches(
    lengths: Sequence[int], *, max_batch_tokens: int, max_batch_size: int, batch_overhead_tokens: float = 0.0
) -> list[list[int]]:
    """Split item indices into batches of similar length, shortest first, at the least modelled cost.

    A forward pass costs about `batch_overhead_tokens + count x longest` token-times (every row is padded to the
    batch's longest; measured on a 2-core CPU: ~18 ms + 0.61 ms per padded token for SmolLM2-15 blocks, i.e. an
    overhead of ~30 tokens). An exact dynamic programme over the length-sorted items picks the cut points; each
    batch keeps count x longest within `max_batch_tokens` and count within `max_batch_size`. With overhead 0 every
    distinct length gets its own batch; a large overhead gives few full batches. An item alone over the budget
    still gets a batch of its own (start-up guarantees max_batch_tokens >= the model's max length)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    if n == 0:
        return []
    sizes = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j sorted items
    cut = [0] * (n + 1)  # cut[j]: where the last batch of that best plan starts
    for end in range(1, n + 1):
        longest = sizes[end - 1]  # sorted: the batch's last item is its longest
        for start in range(end - 1, max(-1, end - 1 - max_batch_size), -1):
            count = end - start
            if count > 1 and count * longest > max_batch_tokens:
                break  # earlier starts only add rows
            cost = best[start] + batch_overhead_tokens + count * longest
            if cost <= best[end]:  # ties: the larger batch (fewer passes)
                best[end], cut[end] = cost, start
    batches: list[list[int]] = []
    end = n
    while end > 0:
        batches.append(order[cut[end] : end])
        end = cut[end]
    return batches[::-1]


def plan_packed(lengths: Sequence[int], *, max_pass_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Split item indices, in arrival order, into packed passes (one unpadded row each).

    A packed pass costs about a fixed overhead plus its token count, so fewer passes are always cheaper; its
    attention grows with the square of the row, hence `max_pass_tokens`. The plan has the fewest passes that
    budget and `max_batch_size` allow in arrival order, and among those the smallest largest pass (two half
    passes finish sooner on average than a full one and a sliver). An item alone over the budget gets a pass of
    its own."""
    if not lengths:
        return []
    fewest = len(_fill(lengths, max_pass_tokens, max_batch_size))
    low, high = 1, max_pass_tokens  # the smallest cap that still needs no more passes (monotone in the cap)
    while low < high:
        middle = (low + high) // 2
        if len(_fill(lengths, middle, max_batch_size)) <= fewest:
            high = middle
        else:
            low = middle + 1
    return _fill(lengths, low, max_batch_size)


def _fill(lengths: Sequence[int], cap: int, max_batch_size: int) -> list[list[int]]:
    """Greedy in order: a pass takes items while they fit `cap` and the count (the fewest ordered passes)."""
    batches: list[list[int]] = [[]]
    tokens = 0
    for i, length in enumerate(lengths):
        if batches[-1] and (tokens + length > cap or len(batches[-1]) >= max_batch_size):
            batches.append([])
            tokens = 0
        batches[-1].append(i)
        tokens += length
    return batches


@dataclass(eq=False)
class _Pass:
    """A forward pass handed to the worker: its texts and the future of (outputs, seconds)."""

    items: list[PendingText]
    result: asyncio.Future[tuple[Sequence[Any], float]]


class DynamicBatcher:
    """Runs on the event loop; forward passes run on `workers` dedicated threads. A new pass is drained from the
    queue only when a worker is free, so while all are busy the queue grows into the next, larger pass."""

    def __init__(
        self,
        encode_batch: EncodeBatch,
        *,
        max_batch_tokens: int,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        batch_overhead_tokens: float = 32.0,
        max_packed_tokens: int | None = None,
        workers: int = 1,
        thread_init: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """`max_packed_tokens`: the encoder packs each pass into one unpadded row; plan by `plan_packed` with this
        budget (None: padded passes, planned by `plan_batches`). `workers`: passes that may run at once (on a
        2-core CPU, two 1-thread passes did 1.6x the texts/s of one 2-thread pass; docs/performance.md).
        `thread_init` runs once on each worker thread (the encoder's per-thread setup)."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._encode_batch = encode_batch
        self._max_packed_tokens = max_packed_tokens
        self._batch_overhead_tokens = batch_overhead_tokens
        self._max_batch_tokens = max_batch_tokens
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_ms / 1000.0
        self._max_queue = max_queue
        self._metrics = metrics
        self._queue: deque[PendingText] = deque()
        self._queued_tokens = 0
        self._depth = 0  # texts accepted and not yet started: queued + drained into a plan
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unfinished: set[PendingText] = set()  # drained from the queue, not yet answered
        self._answering: set[asyncio.Task[None]] = set()  # one per unfinished pass (a reference keeps it alive)
        self._last_drained = 0  # texts the previous round took: the adaptive window's target
        self._workers = workers
        self._free = asyncio.Semaphore(workers)  # a worker can take a pass; taken before draining
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flipmatch-forward",
                                            initializer=thread_init)

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def workers(self) -> int:
        return self._workers

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="flipmatch-batcher")

    async def stop(self) -> None:
        """Stop the loop and fail every text not yet answered (NotReady: shutting down)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for task in list(self._answering):
            task.cancel()
        for item in [*self._unfinished, *self._queue]:
            if not item.future.done():
                item.future.set_exception(NotReady("the service is shutting down; retry on another replica"))
        self._queue.clear()
        self._unfinished = set()
        self._set_depth(0)
        # Passes may still be running on the workers: wait for them off the loop; queued ones are not started
        # (their texts were just answered NotReady).
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    def submit(self, items: Sequence[tuple[Any, int]]) -> list[asyncio.Future[Any]]:
        """Queue all items or none. Raises Overloaded when they do not fit."""
        if self._task is None:
            raise NotReady("the embedding engine is not running")
        if self._depth + len(items) > self._max_queue:
            if self._metrics is not None:
                self._metrics.queue_rejections.inc()
            raise Overloaded(
                f"the embedding queue is full ({self._depth} texts waiting, limit {self._max_queue}, "
                "FLIPMATCH_BATCHING__MAX_QUEUE); retry after a moment"
            )
        loop = asyncio.get_running_loop()
        futures = []
        for payload, n_tokens in items:
            pending = PendingText(payload, n_tokens, loop.create_future())
            self._queue.append(pending)
            self._queued_tokens += n_tokens
            futures.append(pending.future)
        self._set_depth(self._depth + len(items))
        self._wakeup.set()
        return futures

    async def submit_when_room(self, items: Sequence[tuple[Any, int]]) -> list[asyncio.Future[Any]]:
        """Like submit, but waits for room instead of refusing (background work such as imports)."""
        if len(items) > self._max_queue:
            raise ValueError(f"{len(items)} items can never fit a queue of {self._max_queue}")
        while self._depth + len(items) > self._max_queue:
            self._room.clear()
            await self._room.wait()
        return self.submit(items)

    def _set_depth(self, depth: int) -> None:
        self._depth = depth
        if self._metrics is not None:
            self._metrics.queue_depth.set(depth)
        if depth < self._max_queue:
            self._room.set()

    def _batch_full(self) -> bool:
        return len(self._queue) >= self._max_batch_size or self._queued_tokens >= self._max_batch_tokens

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._free.acquire()  # drain only for a free worker: meanwhile the queue grows into a batch
            self._free.release()
            # Coalescing window (off at max_wait 0, the default): the oldest text waits at most max_wait for
            # others to join, and only while fewer texts wait than the last round drained. On 2 CPU cores it
            # held a worker idle while the other ran, costing throughput at moderate concurrency; the queue
            # grows into larger passes by itself while every worker is busy.
            deadline = self._queue[0].enqueued_at + self._max_wait_s
            target = self._last_drained if self._last_drained > 1 else 1
            while (
                not self._batch_full()
                and len(self._queue) < target
                and (remaining := deadline - time.monotonic()) > 0
            ):
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            drained = list(self._queue)
            self._unfinished.update(drained)  # until answered: stop() answers whatever is left
            self._last_drained = len(drained)
            self._queue.clear()
            self._queued_tokens = 0
            # Every pass of the plan goes to the workers at once: those texts are drained, waiting cannot grow
            # them, and a worker that finishes one starts the next without a round trip through this loop.
            # Texts are checked for cancelled clients when their pass is queued, before it runs.
            for group in self._plan([item.n_tokens for item in drained]):
                queued = self._queue_pass([drained[i] for i in group], loop)
                if queued is not None:
                    await self._free.acquire()
                    task = loop.create_task(self._finish_pass(queued))
                    self._answering.add(task)
                    task.add_done_callback(self._answering.discard)

    def _plan(self, lengths: list[int]) -> list[list[int]]:
        if self._max_packed_tokens is not None:
            return plan_packed(lengths, max_pass_tokens=self._max_packed_tokens, max_batch_size=self._max_batch_size)
        return plan_batches(lengths, max_batch_tokens=self._max_batch_tokens, max_batch_size=self._max_batch_size,
                            batch_overhead_tokens=self._batch_overhead_tokens)

    def _timed_encode(self, payloads: list[Any]) -> tuple[Sequence[Any], float]:
        started = time.perf_counter()  # on the worker: the pass itself, not its wait in the queue
        outputs = self._encode_batch(payloads)
        return outputs, time.perf_counter() - started

    def _queue_pass(self, batch: list[PendingText], loop: asyncio.AbstractEventLoop) -> _Pass | None:
        live = [item for item in batch if not item.future.done()]
        self._unfinished.difference_update(item for item in batch if item.future.done())  # clients gone
        self._set_depth(self._depth - len(batch))
        if self._metrics is not None and len(live) < len(batch):
            self._metrics.dropped_texts.inc(len(batch) - len(live))
        if not live:
            return None
        result = loop.run_in_executor(self._executor, self._timed_encode, [i.payload for i in live])
        return _Pass(live, result)

    async def _finish_pass(self, queued: _Pass) -> None:
        try:
            await self._answer(queued)
        finally:
            self._unfinished.difference_update(queued.items)
            self._free.release()

    async def _answer(self, queued: _Pass) -> None:
        live = queued.items
        if self._max_packed_tokens is not None:
            padded_tokens = sum(item.n_tokens for item in live)  # one row, no padding
        else:
            padded_tokens = len(live) * max(item.n_tokens for item in live)
        try:
            outputs, elapsed = await queued.result
            if len(outputs) != len(live):
                raise RuntimeError(f"encoder returned {len(outputs)} outputs for {len(live)} inputs")
        except Exception as err:  # one bad batch must not stop the loop: fail its futures, keep serving
            logger.exception("forward pass failed batch_size=%d tokens=%d", len(live), padded_tokens)
            if self._metrics is not None:
                self._metrics.batch_failures.labels(type(err).__name__).inc()
            for item in live:
                if not item.future.done():
                    item.future.set_exception(EncoderFailed("the model failed on this batch; retry the request"))
            return
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(live))
            self._metrics.batch_tokens.observe(padded_tokens)
            self._metrics.inference_duration.observe(elapsed)
        logger.debug("batch size=%d tokens=%d ms=%.1f", len(live), padded_tokens, elapsed * 1000)
        for item, output in zip(live, outputs, strict=True):
            if not item.future.done():
                item.future.set_result(output)
