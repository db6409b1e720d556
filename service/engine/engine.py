"""EmbeddingEngine: texts in, float32 vectors out, through the dynamic batcher; plus the encoder contract it needs.

Owns the per-text limits (characters, tokens, truncation), warm-up and start/stop. Tokenization and the forward
pass run off the event loop. Knows nothing about HTTP or settings objects: it is given plain values.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.engine.batcher import DynamicBatcher
from service.engine.cache import QueryCache, normalise
from service.engine.forward_processes import ForwardProcesses
from service.engine.forward_processes import supported as fork_supported
from service.errors import ConfigError, InvalidInput
from service.metrics import Metrics

logger = logging.getLogger(__name__)

# Short inputs are tokenized on the event loop: a hop to a thread (a wake-up and two GIL hand-offs while the
# forward workers run) costs more than the work. Measured with the Gemma default on machine A: a chat question
# 23 µs, 500 characters 0.27 ms (cut at 64 tokens, so tokenized twice), 2,000 characters 1.05 ms; the bound keeps
# the loop's stall at about 0.3 ms.
INLINE_TOKENIZE_CHARS = 500


@dataclass(frozen=True)
class TokenizedText:
    """A text after tokenization: what the batcher queues. `truncated`: tokens were cut to the model limit."""

    ids: tuple[int, ...]
    type_ids: tuple[int, ...] | None
    truncated: bool

    @property
    def n_tokens(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class CalibrationRow:
    """One timed start-up candidate: median ms per probe batch (a lone text, a batch of 12 per pass with every
    worker busy), parity."""

    dtype: str
    threads: int
    ms: tuple[float, ...]
    min_cosine: float
    passed: bool
    workers: int = 1


@dataclass(frozen=True)
class EncoderInfo:
    model: str
    dimension: int
    device: str
    dtype: str
    max_seq_length: int
    fingerprint: str
    match_threshold: float
    threads: int | None = None  # CPU forward threads (None: not managed, e.g. CUDA)
    selection: str = "flags"  # how dtype/threads were chosen: "dtype measured, threads measured", ...
    reason: str = ""
    calibration: tuple[CalibrationRow, ...] = ()
    calibration_seconds: float = 0.0
    batch_overhead_tokens: float | None = None  # fitted from the calibration timings; None: not measured
    packed: bool = False  # passes run their texts as one unpadded row (checked against padded passes at load)
    prepacked: bool = False  # linear weights held in oneDNN's packed layout (checked against eager at load)
    forward_workers: int = 1  # forward passes that run at once, each on `threads` threads


class TextEncoder(Protocol):
    """What the engine needs from an encoder. `encoder.Encoder` is the real one; tests use a fake."""

    @property
    def info(self) -> EncoderInfo: ...

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedText]: ...

    def encode(self, batch: Sequence[TokenizedText]) -> np.ndarray: ...  # (B, D) float32


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # (N, D) float32, as the model outputs them (normalized only if the model normalizes)
    prompt_tokens: int
    truncated: int  # texts cut to max_text_chars or to the model's token limit


class EmbeddingEngine:
    def __init__(
        self,
        encoder: TextEncoder,
        *,
        max_batch_tokens: int,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        max_text_chars: int,
        batch_overhead_tokens: float = 32.0,
        max_packed_tokens: int = 256,
        forward_workers: int | None = None,
        forward_processes: bool = False,
        truncate: bool,
        metrics: Metrics | None = None,
        cache: QueryCache | None = None,
    ) -> None:
        info = encoder.info
        if max_batch_tokens < info.max_seq_length:
            raise ConfigError(
                f"FLIPMATCH_BATCHING__MAX_BATCH_TOKENS={max_batch_tokens} is below the model's max sequence "
                f"length ({info.max_seq_length}): one long text would not fit a batch. Set it to at least "
                f"{info.max_seq_length}."
            )
        self._encoder = encoder
        self._max_text_chars = max_text_chars
        self._truncate = truncate
        self._metrics = metrics
        self._cache = cache if cache is not None and cache.enabled else None
        self._bulk_chunk = max(1, min(max_queue // 2, max_batch_size * 4))
        # Processes only for 1-thread CPU workers: a forked child cannot safely start an OpenMP team.
        self._use_processes = (forward_processes and info.device == "cpu" and info.threads == 1
                               and fork_supported())
        self._processes: ForwardProcesses | None = None
        self.batcher = DynamicBatcher(
            self._encode,
            max_batch_tokens=max_batch_tokens,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            batch_overhead_tokens=batch_overhead_tokens,
            max_packed_tokens=max_packed_tokens if info.packed else None,
            workers=forward_workers or info.forward_workers,
            thread_init=getattr(encoder, "prepare_thread", None),
            metrics=metrics,
        )

    @property
    def info(self) -> EncoderInfo:
        return self._encoder.info

    @property
    def forward_workers(self) -> int:
        """Forward passes that run at once (the setting, else the encoder's calibrated choice)."""
        return self.batcher.workers

    @property
    def forward_processes(self) -> bool:
        """Forward passes run in forked child processes (engine/forward_processes.py), not on threads."""
        return self._use_processes

    @property
    def forward_pids(self) -> list[int]:
        return self._processes.pids if self._processes is not None else []

    def _encode(self, batch: Sequence[TokenizedText]) -> np.ndarray:
        if self._processes is not None:
            return self._processes.encode(batch)
        return self._encoder.encode(batch)

    def _prepare_child(self) -> None:
        gc.freeze()  # the inherited objects are never collected there: their pages stay shared with the parent
        prepare = getattr(self._encoder, "prepare_thread", None)
        if prepare is not None:
            prepare()

    async def start(self) -> None:
        """Warm-up forward pass (first-call allocations, lazy kernels), fork the forward processes if used (they
        inherit the warm model), then start batching."""
        await asyncio.to_thread(lambda: self._encoder.encode(self._encoder.tokenize(["warm-up"])))
        if self._use_processes:
            self._processes = ForwardProcesses(self._encoder.encode, self.batcher.workers, init=self._prepare_child)
        await self.batcher.start()
        logger.info("engine started model=%s device=%s dtype=%s forward=%d %s", self.info.model, self.info.device,
                    self.info.dtype, self.batcher.workers, "processes" if self._use_processes else "threads")

    async def stop(self) -> None:
        await self.batcher.stop()  # no pass is running after this: the children can be told to exit
        if self._processes is not None:
            await asyncio.to_thread(self._processes.close)
            self._processes = None

    def _clip(self, texts: Sequence[str]) -> list[str]:
        too_long = [i for i, text in enumerate(texts) if len(text) > self._max_text_chars]
        if too_long and not self._truncate:
            raise InvalidInput(
                f"text {too_long[0]} has {len(texts[too_long[0]])} characters; the limit is {self._max_text_chars} "
                "(FLIPMATCH_LIMITS__MAX_TEXT_CHARS). Shorten it, or enable FLIPMATCH_LIMITS__TRUNCATE.",
                code="text_too_long",
            )
        return [text[: self._max_text_chars] for text in texts]

    async def embed(self, texts: Sequence[str], *, wait_for_room: bool = False) -> Embeddings:
        """Embed texts in order. Raises Overloaded (queue full, unless wait_for_room), InvalidInput (too long
        with truncation off) or EncoderFailed. Cancelling the caller drops its queued texts before compute.
        With the query cache on, texts are embedded in their normalised form and repeats skip the model."""
        if not texts:
            return Embeddings(np.zeros((0, self.info.dimension), np.float32), 0, 0)
        clipped = self._clip(texts)
        cache = self._cache
        if cache is None:
            rows = await self._compute(clipped, list(range(len(clipped))), wait_for_room=wait_for_room)
        else:
            keys = [normalise(t) for t in clipped]
            embed_as = [k or t for k, t in zip(keys, clipped, strict=True)]  # whitespace-only: as given, uncached
            hits = [cache.get(k) if k else None for k in keys]
            first: dict[str, int] = {}  # each distinct miss computed once, even if a request repeats it
            for i, hit in enumerate(hits):
                if hit is None:
                    first.setdefault(embed_as[i], i)
            computed = dict(zip(first, await self._compute(list(first), list(first.values()),
                                                           wait_for_room=wait_for_room), strict=True))
            rows = []
            for i, hit in enumerate(hits):
                row = hit if hit is not None else computed[embed_as[i]]
                if hit is None and keys[i]:
                    cache.put(keys[i], *row)
                rows.append(row)
            if self._metrics is not None:
                self._metrics.cache_hits.inc(sum(h is not None for h in hits))
                self._metrics.cache_misses.inc(sum(h is None for h in hits))
        truncated = sum(1 for i, row in enumerate(rows) if row[2] or len(texts[i]) > self._max_text_chars)
        if truncated and self._metrics is not None:
            self._metrics.truncated_texts.inc(truncated)
        return Embeddings(np.stack([row[0] for row in rows]).astype(np.float32, copy=False),
                          sum(row[1] for row in rows), truncated)

    async def _compute(self, texts: Sequence[str], positions: Sequence[int], *,
                       wait_for_room: bool) -> list[tuple[np.ndarray, int, bool]]:
        """(vector, tokens, token-truncated) per text, through the batcher. `positions`: each text's index in
        the caller's request, for error messages."""
        if not texts:
            return []
        if sum(len(t) for t in texts) <= INLINE_TOKENIZE_CHARS:
            tokenized = self._encoder.tokenize(list(texts))
        else:  # long inputs: off the event loop, so other requests keep being served meanwhile
            tokenized = await asyncio.to_thread(self._encoder.tokenize, list(texts))
        cut_tokens = [i for i, t in enumerate(tokenized) if t.truncated]
        if cut_tokens and not self._truncate:
            raise InvalidInput(
                f"text {positions[cut_tokens[0]]} is longer than the model's limit of {self.info.max_seq_length} "
                "tokens. Shorten it, or enable FLIPMATCH_LIMITS__TRUNCATE.",
                code="text_too_long",
            )
        items = [(t, t.n_tokens) for t in tokenized]
        futures = await self.batcher.submit_when_room(items) if wait_for_room else self.batcher.submit(items)
        try:
            outputs = [await future for future in futures]
        finally:
            for future in futures:  # on error or cancellation, the rest need not be computed
                future.cancel()
        return [(np.asarray(out, np.float32), t.n_tokens, t.truncated) for out, t in zip(outputs, tokenized,
                                                                                        strict=True)]

    async def embed_many(self, texts: Sequence[str]) -> Embeddings:
        """Bulk embedding (imports, re-embedding): chunked so it never overflows the queue, waiting for room
        instead of failing, with two chunks in flight so the batcher always has the next one queued."""
        chunks = [texts[i : i + self._bulk_chunk] for i in range(0, len(texts), self._bulk_chunk)]
        gate = asyncio.Semaphore(2)

        async def run(chunk: Sequence[str]) -> Embeddings:
            async with gate:
                return await self.embed(chunk, wait_for_room=True)

        tasks = [asyncio.ensure_future(run(chunk)) for chunk in chunks]
        try:
            parts = [await task for task in tasks]
        finally:
            for task in tasks:
                task.cancel()
        if not parts:
            return await self.embed([])
        return Embeddings(
            np.concatenate([p.vectors for p in parts]),
            sum(p.prompt_tokens for p in parts),
            sum(p.truncated for p in parts),
        )
