"""StoreFollower: keeps this replica's snapshots in step with writes other replicas commit to a shared store.

The store's change sequence is the source of truth. A notification (LISTEN/NOTIFY) wakes the follower at once; a
catch-up by sequence every `catchup_interval_s` covers a missed notification or a reconnect. Each change is applied
through the registry (`sync_corpus` / `sync_entries`), which swaps in the next snapshot as a local write does. While
the database is unreachable the follower retries, and searches keep serving the snapshots already in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from service.corpus.registry import CorpusRegistry
from service.corpus.store import Change, ChangeFeed
from service.errors import StoreUnavailable
from service.metrics import Metrics

logger = logging.getLogger(__name__)
PAGE = 500


@dataclass(frozen=True)
class FollowerStatus:
    applied_sequence: int  # every change up to it is in this replica's snapshots
    head_sequence: int  # the newest change seen in the database
    lag_seconds: float  # age of the oldest change not yet applied (0 when caught up)
    reachable: bool  # the last call to the database succeeded


class StoreFollower:
    def __init__(self, feed: ChangeFeed, registry: CorpusRegistry, *, catchup_interval_s: float,
                 metrics: Metrics | None = None) -> None:
        self._feed, self._registry, self._interval, self._metrics = feed, registry, catchup_interval_s, metrics
        self._applied = self._head = 0
        self._lag_s = 0.0
        self._reachable = True
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> FollowerStatus:
        head = max(self._head, self._applied)
        return FollowerStatus(self._applied, head, self._lag_s if head > self._applied else 0.0, self._reachable)

    def start(self, applied_sequence: int) -> None:
        """Follow changes after `applied_sequence` (read before the corpora were loaded, so nothing falls between:
        a change both loaded and re-applied converges to the same state)."""
        self._applied = self._head = applied_sequence
        self._publish()
        self._task = asyncio.create_task(self._run(), name="store-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        wait = 0.0  # the first wait only sets up LISTEN, so no notification is missed after the first catch-up
        while True:
            try:
                await asyncio.to_thread(self._feed.wait_for_change, wait)
                await self.catch_up()
                self._set_reachable(True)
                wait = self._interval
            except asyncio.CancelledError:
                raise
            except StoreUnavailable:
                self._set_reachable(False)
                await asyncio.sleep(min(self._interval, 1.0))  # reconnect attempts stay bounded in rate
            except Exception:  # a bug must not stop following: log, count, retry from the same sequence
                logger.exception("applying changes failed after seq=%d; retrying", self._applied)
                if self._metrics is not None:
                    self._metrics.store_apply_failures.inc()
                await asyncio.sleep(self._interval)

    async def catch_up(self) -> None:
        """Apply every change after the applied sequence, in order. Raises StoreUnavailable."""
        while True:
            changes = await asyncio.to_thread(self._feed.changes_after, self._applied, limit=PAGE)
            read_at = time.monotonic()
            if not changes:
                break
            self._head = max(self._head, changes[-1].seq)
            self._lag_s = changes[0].age_s
            self._publish()
            await self._apply(changes, read_at)
            if len(changes) < PAGE:
                break
        self._head = max(await asyncio.to_thread(self._feed.head_sequence), self._applied)
        self._lag_s = 0.0 if self._head == self._applied else self._lag_s
        self._publish()

    async def _apply(self, changes: list[Change], read_at: float) -> None:
        """Runs of entry changes to one corpus are applied as one snapshot swap; own writes are already applied."""
        run: list[Change] = []
        for change in [*changes, None]:
            if run and (change is None or change.entry_ids is None or change.corpus != run[0].corpus):
                ids = sorted({i for c in run for i in c.entry_ids or ()})
                await self._registry.sync_entries(run[0].corpus, ids)
                self._applied_through(run, read_at)
                run = []
            if change is None:
                break
            if change.origin == self._feed.origin:
                if not run:
                    self._applied = max(self._applied, change.seq)
                continue
            if change.entry_ids is None:
                await self._registry.sync_corpus(change.corpus)
                self._applied_through([change], read_at)
            else:
                run.append(change)

    def _applied_through(self, changes: list[Change], read_at: float) -> None:
        self._applied = max(self._applied, changes[-1].seq)
        if self._metrics is not None:
            waited = time.monotonic() - read_at
            for change in changes:  # commit (database clock) -> in this replica's snapshots
                self._metrics.store_apply_delay.observe(change.age_s + waited)

    def _set_reachable(self, reachable: bool) -> None:
        if reachable != self._reachable:
            logger.warning("corpus database %s", "reachable again" if reachable else "unreachable")
        self._reachable = reachable
        self._publish()

    def _publish(self) -> None:
        if self._metrics is None:
            return
        status = self.status
        self._metrics.store_applied_sequence.set(status.applied_sequence)
        self._metrics.store_head_sequence.set(status.head_sequence)
        self._metrics.store_lag_changes.set(status.head_sequence - status.applied_sequence)
        self._metrics.store_lag_seconds.set(status.lag_seconds)
        self._metrics.store_reachable.set(1 if status.reachable else 0)
