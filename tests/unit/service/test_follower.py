"""StoreFollower + CorpusRegistry.sync_*: two registries (two replicas) in one process on one real PostgreSQL
database. Each follows the other's writes through the change sequence without re-embedding them; applying a change
twice is harmless; the status reports the applied sequence and the lag."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from service.corpus.index_files import IndexFiles
from service.corpus.registry import CorpusRegistry
from service.corpus.store import CorpusConfig, Entry
from service.metrics import Metrics
from tests.unit.service.test_registry import FakeEmbed, query

pytest.importorskip("psycopg")
from service.corpus.follower import StoreFollower  # noqa: E402
from service.corpus.postgres_store import PostgresStore  # noqa: E402

E1 = Entry("pin", "How do I reset my PIN?", ("forgot my pin",), "Use the app.")
E2 = Entry("card", "Where is my card?", (), "In the mail.")


class Replica:
    def __init__(self, url: str, tmp, name: str, embed: FakeEmbed) -> None:
        self.store = PostgresStore(url)
        self.metrics = Metrics()
        self.registry = CorpusRegistry(self.store, IndexFiles(tmp / name), embed=embed, fingerprint="m1",
                                       dimension=embed.dim, hnsw_threshold=1000, max_corpora=5, metrics=self.metrics)
        self.follower = StoreFollower(self.store, self.registry, catchup_interval_s=0.2, metrics=self.metrics)

    async def open(self) -> None:
        head = self.store.head_sequence()
        await self.registry.load_all()
        self.follower.start(head)

    async def close(self) -> None:
        await self.follower.stop()
        await self.registry.close()
        self.store.close()

    def ids(self, corpus: str, text: str, embed: FakeEmbed) -> list[str]:
        return [c.entry_id for c in self.registry.snapshot(corpus).search(query(text, embed), 3)[0]]


async def until(check: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)  # poll interval, bounded by the deadline


def two_replicas(postgres_url: str, tmp_path, scenario: Callable[..., Awaitable[None]]) -> None:
    async def main() -> None:
        embed_a, embed_b = FakeEmbed(), FakeEmbed()
        a, b = Replica(postgres_url, tmp_path, "a", embed_a), Replica(postgres_url, tmp_path, "b", embed_b)
        await a.open()
        await b.open()
        try:
            await scenario(a, b, embed_a, embed_b)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_writes_follow_without_re_embedding(postgres_url, tmp_path):
    async def scenario(a, b, embed_a, embed_b):
        await a.registry.create("faq", CorpusConfig())
        await a.registry.upsert("faq", [E1, E2])
        await until(lambda: "faq" in b.registry._live and len(b.registry.snapshot("faq").entries) == 2)
        assert b.ids("faq", "forgot my pin", embed_a)[0] == "pin"
        assert embed_b.texts == []  # B never embedded A's entries: vectors came from the store
        await b.registry.delete_entry("faq", "pin")
        await until(lambda: "pin" not in a.registry.snapshot("faq").entries)
        assert "pin" not in a.ids("faq", "forgot my pin", embed_a) and len(a.registry.snapshot("faq")) == 1
        await b.registry.update("faq", answer_threshold=0.9, rerank_enabled=True, rerank_top_k=7)
        await until(lambda: a.registry.info("faq").record.config.answer_threshold == 0.9)
        config = a.registry.info("faq").record.config
        assert (config.rerank_enabled, config.rerank_top_k) == (True, 7)  # the rerank setting follows too
        await until(lambda: a.follower.status.applied_sequence == a.store.head_sequence())
        status = a.follower.status
        assert status.lag_seconds == 0 and status.reachable and status.head_sequence == status.applied_sequence
        await a.registry.delete("faq")
        await until(lambda: "faq" not in b.registry._live)

    two_replicas(postgres_url, tmp_path, scenario)


def test_applying_a_change_twice_converges_to_the_store(postgres_url, tmp_path):
    async def scenario(a, b, embed_a, _):

        await a.registry.create("faq", CorpusConfig())
        await a.registry.upsert("faq", [E1])
        # B adopts the corpus from the change feed: until then snapshot("faq") raises NotFound
        await until(lambda: "faq" in b.registry._live and "pin" in b.registry.snapshot("faq").entries)
        before = dict(b.registry.snapshot("faq").rows)
        await b.registry.sync_entries("faq", ["pin", "never-written"])  # replayed: no duplicate vectors
        await b.registry.sync_corpus("faq")
        snap = b.registry.snapshot("faq")
        assert dict(snap.rows) == before and len(snap.index) == 2
        changed = Entry("pin", "Reset PIN?", (), "New.")
        await a.registry.upsert("faq", [changed])
        await until(lambda: b.registry.snapshot("faq").entries["pin"] == changed)
        assert len(b.registry.snapshot("faq")) == 1  # the old vectors left with the old texts
        found = b.registry.snapshot("faq").search(query("Reset PIN?", embed_a), 1)[0][0]
        assert (found.entry_id, found.matched_question) == ("pin", "Reset PIN?")

    two_replicas(postgres_url, tmp_path, scenario)
