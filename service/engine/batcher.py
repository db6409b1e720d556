"""DynamicBatcher: coalesce texts from concurrent requests into forward passes under a token budget.

It knows "a function that encodes a batch of payloads", never torch or HTTP. The queue is bounded (Overloaded when
full); each drained window is split into batches of similar length at the least modelled cost (padded tokens plus a
per-pass overhead), within a padded-token budget and a count; a text whose future was cancelled (client gone) is
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


@dataclass
class _Pass:
    """A forward pass handed to the worker: its texts and the future of (outputs, seconds)."""

    items: list[PendingText]
    result: asyncio.Future[tuple[Sequence[Any], float]]


class DynamicBatcher:
    """Runs on the event loop; the forward pass runs on one dedicated worker thread (passes never overlap)."""

    def __init__(
        self,
        encode_batch: EncodeBatch,
        *,
        max_batch_tokens: int,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        batch_overhead_tokens: float = 32.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._encode_batch = encode_batch
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
        self._unfinished: list[PendingText] = []  # drained from the queue, not yet answered
        self._last_drained = 0  # texts the previous round took: the adaptive window's target
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flipmatch-forward")

    @property
    def depth(self) -> int:
        return self._depth

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
        for item in [*self._unfinished, *self._queue]:
            if not item.future.done():
                item.future.set_exception(NotReady("the service is shutting down; retry on another replica"))
        self._queue.clear()
        self._unfinished = []
        self._set_depth(0)
        # A forward pass may still be running on the worker: wait for it off the loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True)

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
            # Coalescing window: the oldest text waits at most max_wait for others to join, and only while
            # fewer texts wait than the last round drained: a lone text after a lone round (no concurrent
            # traffic) goes at once, and under steady load the window ends as soon as last round's clients
            # are back, so a long max_wait costs latency only when the load drops.
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
            drained = self._unfinished = list(self._queue)
            self._last_drained = len(drained)
            self._queue.clear()
            self._queued_tokens = 0
            plan = plan_batches(
                [item.n_tokens for item in drained],
                max_batch_tokens=self._max_batch_tokens,
                max_batch_size=self._max_batch_size,
                batch_overhead_tokens=self._batch_overhead_tokens,
            )
            # One pass queued ahead: the worker starts the next pass the moment one ends, instead of idling
            # until this loop has answered the finished pass's requests (at concurrency 32 that wait left the
            # forward thread idle ~30% of the time). Texts are checked for cancelled clients when their pass is
            # queued, one pass before it runs.
            ahead: _Pass | None = None
            for group in plan:
                queued = self._queue_pass([drained[i] for i in group], loop)
                if ahead is not None:
                    await self._finish_pass(ahead)
                ahead = queued
            if ahead is not None:
                await self._finish_pass(ahead)
            self._unfinished = []

    def _timed_encode(self, payloads: list[Any]) -> tuple[Sequence[Any], float]:
        started = time.perf_counter()  # on the worker: the pass itself, not its wait in the queue
        outputs = self._encode_batch(payloads)
        return outputs, time.perf_counter() - started

    def _queue_pass(self, batch: list[PendingText], loop: asyncio.AbstractEventLoop) -> _Pass | None:
        live = [item for item in batch if not item.future.done()]
        self._set_depth(self._depth - len(batch))
        if self._metrics is not None and len(live) < len(batch):
            self._metrics.dropped_texts.inc(len(batch) - len(live))
        if not live:
            return None
        result = loop.run_in_executor(self._executor, self._timed_encode, [i.payload for i in live])
        return _Pass(live, result)

    async def _finish_pass(self, queued: _Pass) -> None:
        live = queued.items
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
