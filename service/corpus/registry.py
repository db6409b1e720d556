"""CorpusRegistry: corpus name -> live corpus (store + served snapshot); writes, atomic swaps, reload, re-embed.

Writes: embed (outside any lock) -> commit to the store under the corpus's writer lock -> build the next snapshot
-> swap it in with one assignment -> save index files in the background. Readers never lock. The registry is handed
an `embed` callable and the model's fingerprint; it does not know how vectors are made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from service.corpus.index import VectorIndex
from service.corpus.index_files import IndexFiles
from service.corpus.snapshot import Candidate, Snapshot, unit_rows
from service.corpus.store import CorpusConfig, CorpusRecord, CorpusStore, Entry, VectorRows, check_corpus_name
from service.errors import Conflict, NotFound, NotReady
from service.metrics import Metrics

logger = logging.getLogger(__name__)

# Query vectors x corpus vectors up to which a search runs on the event loop instead of hopping to a thread and
# back (measured on machine A, one 256-d query, exact search: 20 µs over 1,000 vectors, 77 µs over 5,000).
INLINE_SEARCH_VECTORS = 10_000

# texts -> (raw vectors (N, D) float32, how many texts were truncated)
EmbedFn = Callable[[Sequence[str]], Awaitable[tuple[np.ndarray, int]]]
REEMBED_PAGE = 128


@dataclass
class LiveCorpus:
    record: CorpusRecord
    snapshot: Snapshot
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one writer per corpus
    status: str = "ready"  # ready | reembedding | reembed_failed
    dirty: bool = False
    saver: asyncio.Task[None] | None = None
    reembed: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class CorpusInfo:
    record: CorpusRecord
    entries: int
    vectors: int
    index_kind: str
    status: str


@dataclass(frozen=True)
class WriteSummary:
    entries: int
    vectors: int
    truncated: int


class CorpusRegistry:
    def __init__(self, store: CorpusStore, files: IndexFiles, *, embed: EmbedFn, fingerprint: str, dimension: int,
                 hnsw_threshold: int, max_corpora: int, metrics: Metrics | None = None) -> None:
        self._store, self._files, self._embed = store, files, embed
        self.fingerprint, self.dimension = fingerprint, dimension
        self._hnsw_threshold, self._max_corpora, self._metrics = hnsw_threshold, max_corpora, metrics
        self._live: dict[str, LiveCorpus] = {}
        self._create_lock = asyncio.Lock()
        # Called with a corpus name once it has been re-embedded for the new model (the calibrator redoes it).
        self.reembedded: list[Callable[[str], Awaitable[None]]] = []

    # ---- start-up and shutdown -------------------------------------------------------------------------------
    async def load_all(self) -> None:
        """Reload every stored corpus: index files when they match the store, else a rebuild from stored vectors.
        Corpora indexed by another model keep serving their old snapshot while re-embedding in the background."""
        for record in await asyncio.to_thread(self._store.list_corpora):
            await self._adopt(record)

    async def _adopt(self, record: CorpusRecord) -> None:
        """Serve a stored corpus: load its snapshot, re-embed in the background if another model indexed it."""
        started = time.perf_counter()
        snapshot, rebuilt = await asyncio.to_thread(self._load_snapshot, record)
        live = LiveCorpus(record, snapshot)
        self._live[record.name] = live
        self._publish(live, snapshot)
        if rebuilt:
            self._schedule_save(live)
        if record.fingerprint != self.fingerprint:
            live.status = "reembedding"
            live.reembed = asyncio.create_task(self._reembed(live), name=f"reembed-{record.name}")
        logger.info("corpus loaded name=%s entries=%d vectors=%d from=%s ms=%.0f status=%s", record.name,
                    len(snapshot.entries), len(snapshot), "rebuild" if rebuilt else "index file",
                    (time.perf_counter() - started) * 1000, live.status)

    def _load_snapshot(self, record: CorpusRecord, *, use_files: bool = True) -> tuple[Snapshot, bool]:
        """(snapshot, rebuilt): from the index file when it matches the store, else from stored vectors."""
        entries = list(self._store.iter_entries(record.name))
        index = None
        if use_files:
            index = self._files.load(record.name, generation=record.generation, fingerprint=record.fingerprint)
        if index is not None:
            rows = self._store.load_vectors(record.name, with_vectors=False)
            return Snapshot.build(index=index, rows=rows, entries=entries, fingerprint=record.fingerprint,
                                  generation=record.generation), False
        rows = self._store.load_vectors(record.name, with_vectors=True, fingerprint=record.fingerprint)
        built = None
        if len(rows.ids) and rows.vectors is not None:
            built = VectorIndex.build(rows.ids, rows.vectors, dimension=rows.vectors.shape[1],
                                      hnsw_threshold=self._hnsw_threshold)
        return Snapshot.build(index=built, rows=rows, entries=entries, fingerprint=record.fingerprint,
                              generation=record.generation), True

    async def close(self) -> None:
        """Stop re-embedding (it resumes on the next start) and wait for pending index saves."""
        reembeds = [live.reembed for live in self._live.values() if live.reembed is not None]
        for task in reembeds:
            task.cancel()
        await asyncio.gather(*reembeds, return_exceptions=True)
        savers = [live.saver for live in self._live.values() if live.saver is not None]
        await asyncio.gather(*savers, return_exceptions=True)

    # ---- reads ------------------------------------------------------------------------------------------------
    def _get(self, name: str) -> LiveCorpus:
        live = self._live.get(name)
        if live is None:
            raise NotFound(f"corpus {name!r} does not exist", code="corpus_not_found")
        return live

    def snapshot(self, name: str) -> Snapshot:
        """The snapshot searches see right now (immutable; a later write publishes a new one)."""
        return self._get(name).snapshot

    def info(self, name: str) -> CorpusInfo:
        live = self._get(name)
        snap = live.snapshot
        kind = snap.index.kind if snap.index is not None else "flat"
        return CorpusInfo(live.record, len(snap.entries), len(snap), kind, live.status)

    def list_all(self) -> list[CorpusInfo]:
        return [self.info(name) for name in sorted(self._live)]

    async def search(self, name: str, queries: np.ndarray, k: int) -> tuple[CorpusConfig, list[list[Candidate]]]:
        """Top-k distinct entries for each query vector (Q, D), on the snapshot current at the call."""
        live = self._get(name)
        snapshot = live.snapshot  # one read: the whole search sees one state
        if snapshot.dimension not in (None, queries.shape[1]):
            raise NotReady(f"corpus {name!r} is being re-embedded for the new model; retry shortly",
                           retry_after_s=30)
        started = time.perf_counter()
        if len(queries) * len(snapshot) <= INLINE_SEARCH_VECTORS:  # microseconds: not worth a thread hop
            candidates = snapshot.search(unit_rows(queries), k)
        else:
            candidates = await asyncio.to_thread(snapshot.search, unit_rows(queries), k)
        if self._metrics is not None:
            self._metrics.search_duration.labels(name).observe(time.perf_counter() - started)
        return live.record.config, candidates

    async def get_entry(self, name: str, entry_id: str) -> Entry:
        self._get(name)
        return await asyncio.to_thread(self._store.get_entry, name, entry_id)

    async def list_entries(self, name: str, *, offset: int, limit: int) -> tuple[list[Entry], int]:
        self._get(name)
        return await asyncio.to_thread(self._store.list_entries, name, offset=offset, limit=limit)

    async def stored_vectors(self, name: str) -> VectorRows:
        """The corpus's unit vectors made by the current model, with their entry ids and texts."""
        self._get(name)
        return await asyncio.to_thread(self._store.load_vectors, name, with_vectors=True,
                                       fingerprint=self.fingerprint)

    async def get_calibration(self, name: str) -> Mapping[str, Any] | None:
        self._get(name)
        return await asyncio.to_thread(self._store.get_calibration, name)

    async def save_calibration(self, name: str, calibration: Mapping[str, Any], *, answer_threshold: float,
                               clarify_margin: float) -> CorpusInfo:
        """Store a calibration and switch the corpus to its thresholds (the next search uses them)."""
        live = self._get(name)
        async with live.lock:
            config = replace(live.record.config, answer_threshold=answer_threshold, clarify_margin=clarify_margin)
            live.record = await asyncio.to_thread(self._store.save_calibration, name, config, calibration)
        return self.info(name)

    async def all_entries(self, name: str) -> list[Entry]:
        self._get(name)
        return await asyncio.to_thread(lambda: list(self._store.iter_entries(name)))

    # ---- corpus lifecycle -------------------------------------------------------------------------------------
    async def create(self, name: str, config: CorpusConfig) -> CorpusInfo:
        check_corpus_name(name)
        async with self._create_lock:
            if name in self._live:
                raise Conflict(f"corpus {name!r} already exists", code="corpus_exists")
            if len(self._live) >= self._max_corpora:
                raise Conflict(f"there are already {len(self._live)} corpora, the limit "
                               "(FLIPMATCH_LIMITS__MAX_CORPORA); delete one first", code="too_many_corpora")
            record = await asyncio.to_thread(self._store.create_corpus, name, config, fingerprint=self.fingerprint)
            live = LiveCorpus(record, Snapshot.empty(fingerprint=self.fingerprint))
            self._live[name] = live
            self._publish(live, live.snapshot)
        return self.info(name)

    async def update(self, name: str, **changes: Any) -> CorpusInfo:
        live = self._get(name)
        async with live.lock:
            config = replace(live.record.config, **changes)
            live.record = await asyncio.to_thread(self._store.update_corpus, name, config)
        return self.info(name)

    async def delete(self, name: str) -> None:
        live = self._get(name)
        async with live.lock:
            await asyncio.to_thread(self._store.delete_corpus, name)
            await self._forget(live)

    async def _forget(self, live: LiveCorpus) -> None:
        """Stop serving a corpus the store no longer has (writer lock held)."""
        name = live.record.name
        if live.reembed is not None:
            live.reembed.cancel()
        if self._live.get(name) is live:
            self._live.pop(name)
        if live.saver is not None:
            await asyncio.gather(live.saver, return_exceptions=True)
        await asyncio.to_thread(self._files.remove, name)
        if self._metrics is not None:
            self._metrics.forget_corpus(name)

    # ---- other replicas' writes (a shared store's change feed; see follower.py) -------------------------------
    async def sync_corpus(self, name: str) -> None:
        """Apply a corpus-level change committed elsewhere: created, settings changed, deleted (or deleted and
        created again), re-embedded. Reads the corpus's current record, so applying it twice is harmless."""
        try:
            record: CorpusRecord | None = await asyncio.to_thread(self._store.get_corpus, name)
        except NotFound:
            record = None
        live = self._live.get(name)
        if live is not None and (record is None or record.created_at != live.record.created_at):
            async with live.lock:
                await self._forget(live)
            live = None
        if record is None:
            return
        if live is None:
            async with self._create_lock:
                if name not in self._live:
                    await self._adopt(record)
            return
        async with live.lock:
            rebuilt = live.snapshot.fingerprint != record.fingerprint == self.fingerprint  # re-embedded elsewhere
            live.record = record
            if rebuilt:
                self._publish(live, await self._rebuild(live))
                live.status = "ready"
                self._schedule_save(live)

    async def sync_entries(self, name: str, entry_ids: Sequence[str]) -> None:
        """Apply an entry write committed elsewhere: re-read those entries and their vectors (never re-embedding)
        and swap in the next snapshot. Idempotent: it converges on what the store holds now."""
        live = self._live.get(name)
        if live is None:
            return  # the corpus-level change that created it loads it whole
        async with live.lock:
            if self._live.get(name) is not live or live.snapshot.fingerprint != self.fingerprint:
                return  # deleted meanwhile, or re-embedding: the rebuild that ends it reads everything

            def read() -> tuple[list[Entry], VectorRows, int]:
                entries = self._store.get_entries(name, entry_ids)
                rows = self._store.load_vectors(name, with_vectors=True, fingerprint=self.fingerprint,
                                                entry_ids=[e.id for e in entries])
                return entries, rows, self._store.get_corpus(name).generation

            try:
                entries, rows, generation = await asyncio.to_thread(read)
            except NotFound:
                return  # deleted meanwhile: its corpus-level change follows

            # An entry whose stored vectors are all another model's was re-embedded (or written) by a replica
            # serving another model, during an upgrade: keep serving what this replica has for it.
            other_model = {e.id for e in entries} - set(rows.entry_ids)
            entries = [e for e in entries if e.id not in other_model]

            def step(snap: Snapshot) -> Snapshot:
                touched, stored = set(entry_ids) - other_model, set(rows.ids.tolist())
                # Vector rows are immutable (a rewrite gets new ids): drop the ones gone, add the ones not held.
                removed = [vid for vid, (eid, _) in snap.rows.items() if eid in touched and vid not in stored]
                new = np.asarray([vid not in snap.rows for vid in rows.ids.tolist()], bool)
                added = VectorRows(rows.ids[new], [e for e, n in zip(rows.entry_ids, new, strict=True) if n],
                                   [t for t, n in zip(rows.texts, new, strict=True) if n],
                                   None if rows.vectors is None else rows.vectors[new])
                return snap.apply(removed_ids=np.asarray(removed, np.int64), added=added, upserted=entries,
                                  deleted=touched - {e.id for e in entries}, generation=generation,
                                  hnsw_threshold=self._hnsw_threshold)

            await self._advance(live, step)

    # ---- entry writes -----------------------------------------------------------------------------------------
    async def _embed_entries(self, entries: Sequence[Entry]) -> tuple[list[np.ndarray], int]:
        texts = [text for entry in entries for text in entry.texts()]
        raw, truncated = await self._embed(texts)
        vectors = unit_rows(raw)
        bounds = np.cumsum([0] + [len(entry.texts()) for entry in entries])
        return [vectors[bounds[i] : bounds[i + 1]] for i in range(len(entries))], truncated

    async def upsert(self, name: str, entries: Sequence[Entry]) -> WriteSummary:
        """Insert or replace entries (the last copy wins when an id repeats). Returns once committed."""
        live = self._get(name)
        entries = list({entry.id: entry for entry in entries}.values())
        vectors, truncated = await self._embed_entries(entries)
        async with live.lock:
            result = await asyncio.to_thread(self._store.upsert_entries, name, entries, vectors,
                                             fingerprint=self.fingerprint)
            await self._advance(live, lambda snap: snap.apply(
                removed_ids=result.removed_ids, added=result.added, upserted=entries, deleted=(),
                generation=result.generation, hnsw_threshold=self._hnsw_threshold))
        return WriteSummary(len(entries), len(result.added.ids), truncated)

    async def delete_entry(self, name: str, entry_id: str) -> None:
        live = self._get(name)
        async with live.lock:
            result = await asyncio.to_thread(self._store.delete_entries, name, [entry_id])
            await self._advance(live, lambda snap: snap.apply(
                removed_ids=result.removed_ids, added=result.added, upserted=(), deleted=(entry_id,),
                generation=result.generation, hnsw_threshold=self._hnsw_threshold))

    async def _advance(self, live: LiveCorpus, step: Callable[[Snapshot], Snapshot]) -> None:
        """After a commit (writer lock held): build the next snapshot and swap it in."""
        current = live.snapshot
        if current.dimension not in (None, self.dimension):
            return  # the old model's snapshot cannot take new vectors; the re-embed rebuild picks them up
        try:
            nxt = await asyncio.to_thread(step, current)
        except Exception:  # the commit stands; rebuild the snapshot from the store rather than serve a stale one
            logger.exception("snapshot update failed corpus=%s: rebuilding from the store", live.record.name)
            nxt = await self._rebuild(live)
        self._publish(live, nxt)
        self._schedule_save(live)

    async def _rebuild(self, live: LiveCorpus) -> Snapshot:
        record = await asyncio.to_thread(self._store.get_corpus, live.record.name)
        live.record = record
        snapshot, _ = await asyncio.to_thread(lambda: self._load_snapshot(record, use_files=False))
        return snapshot

    def _publish(self, live: LiveCorpus, snapshot: Snapshot) -> None:
        live.snapshot = snapshot  # the atomic swap: readers hold whichever object they read
        if self._metrics is not None:
            self._metrics.set_corpus_size(live.record.name, entries=len(snapshot.entries), vectors=len(snapshot))

    def _schedule_save(self, live: LiveCorpus) -> None:
        """Coalesce saves: at most one running per corpus, re-run while writes keep marking it dirty."""
        live.dirty = True
        if live.saver is None or live.saver.done():
            live.saver = asyncio.create_task(self._save_loop(live), name=f"save-{live.record.name}")

    async def _save_loop(self, live: LiveCorpus) -> None:
        while live.dirty and self._live.get(live.record.name) is live:
            live.dirty = False
            try:
                await asyncio.to_thread(self._files.save, live.record.name, live.snapshot)
            except Exception:  # index files are a cache of the store: log it; the next start rebuilds
                logger.exception("index save failed corpus=%s", live.record.name)

    # ---- re-embedding after a model change --------------------------------------------------------------------
    async def _reembed(self, live: LiveCorpus) -> None:
        name = live.record.name
        started, done = time.perf_counter(), 0
        try:
            while stale := await asyncio.to_thread(self._store.stale_entries, name, fingerprint=self.fingerprint,
                                                   limit=REEMBED_PAGE):
                vectors, _ = await self._embed_entries(stale)
                done += await asyncio.to_thread(self._store.replace_stale_vectors, name, stale, vectors,
                                                fingerprint=self.fingerprint)
            async with live.lock:
                await asyncio.to_thread(self._store.set_fingerprint, name, fingerprint=self.fingerprint,
                                        dimension=self.dimension)
                self._publish(live, await self._rebuild(live))
                live.status = "ready"
            self._schedule_save(live)
            logger.info("re-embedded corpus=%s entries=%d s=%.1f", name, done, time.perf_counter() - started)
            for listener in self.reembedded:
                try:
                    await listener(name)
                except Exception:  # the re-embed stands; a stale calibration is redone on the next start
                    logger.exception("after-re-embed hook failed corpus=%s", name)
        except asyncio.CancelledError:
            raise
        except Exception:  # keep serving the old snapshot; the next start retries
            live.status = "reembed_failed"
            logger.exception("re-embedding failed corpus=%s", name)
