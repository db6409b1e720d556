"""CorpusRegistry: writes and atomic snapshot swaps, reload from index files or the store, re-embedding after a
model change, deletion. Vectors come from a hash-based fake embed (no model)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from service.corpus.index_files import IndexFiles
from service.corpus.registry import CorpusRegistry
from service.corpus.sqlite_store import SQLiteStore
from service.corpus.store import CorpusConfig, Entry
from service.errors import Conflict, InvalidInput, NotFound, NotReady
from service.metrics import Metrics

T = TypeVar("T")


def vector(text: str, dim: int, salt: str = "") -> np.ndarray:
    seed = int(hashlib.sha256((salt + text).encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


class FakeEmbed:
    def __init__(self, dim: int = 8, salt: str = "") -> None:
        self.dim, self.salt = dim, salt
        self.texts: list[str] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        if self.gate is not None:
            await self.gate.wait()
        self.texts += texts
        return np.stack([vector(t, self.dim, self.salt) for t in texts]), 0


def make_registry(tmp_path: Path, embed: FakeEmbed, fingerprint: str = "m1", **options: Any) -> CorpusRegistry:
    settings = {"hnsw_threshold": 1000, "max_corpora": 5, "metrics": Metrics()}
    settings.update(options)
    return CorpusRegistry(SQLiteStore(tmp_path / "db.sqlite3"), IndexFiles(tmp_path / "indexes"), embed=embed,
                          fingerprint=fingerprint, dimension=embed.dim, **settings)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


ENTRIES = [Entry("pin", "How do I reset my PIN?", ("forgot my pin", "change pin"), "Use the app."),
           Entry("card", "Where is my card?", ("card not arrived",), "It is in the mail."),
           Entry("fee", "What does a transfer cost?", (), "1 EUR.")]


def query(text: str, embed: FakeEmbed) -> np.ndarray:
    return vector(text, embed.dim, embed.salt)[None, :]


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


def test_create_list_and_limits(tmp_path):
    async def scenario() -> None:
        registry = make_registry(tmp_path, FakeEmbed(), max_corpora=2)
        await registry.load_all()
        await registry.create("a", CorpusConfig())
        with pytest.raises(Conflict, match="already exists"):
            await registry.create("a", CorpusConfig())
        with pytest.raises(InvalidInput):
            await registry.create("../a", CorpusConfig())
        await registry.create("b", CorpusConfig())
        with pytest.raises(Conflict, match="FLIPMATCH_LIMITS__MAX_CORPORA"):
            await registry.create("c", CorpusConfig())
        assert [i.record.name for i in registry.list_all()] == ["a", "b"]
        with pytest.raises(NotFound):
            registry.info("c")
        await registry.close()

    run(scenario)


def test_search_returns_distinct_entries_with_their_best_question(tmp_path):
    embed = FakeEmbed()

    async def scenario() -> None:
        registry = make_registry(tmp_path, embed)
        await registry.load_all()
        await registry.create("faq", CorpusConfig())
        summary = await registry.upsert("faq", ENTRIES)
        assert (summary.entries, summary.vectors) == (3, 6)
        _, (candidates,) = await registry.search("faq", query("forgot my pin", embed), 3)
        assert [c.entry_id for c in candidates][0] == "pin"
        assert candidates[0].matched_question == "forgot my pin"
        assert candidates[0].score == pytest.approx(1.0, abs=1e-5)
        assert len({c.entry_id for c in candidates}) == len(candidates) == 3
        await registry.close()

    run(scenario)


def test_writes_publish_a_new_snapshot_and_leave_the_old_one_intact(tmp_path):
    embed = FakeEmbed()

    async def scenario() -> None:
        registry = make_registry(tmp_path, embed)
        await registry.load_all()
        await registry.create("faq", CorpusConfig())
        await registry.upsert("faq", ENTRIES[:2])
        before = registry.snapshot("faq")
        await registry.upsert("faq", ENTRIES[2:])
        await registry.delete_entry("faq", "pin")
        after = registry.snapshot("faq")
        assert before is not after
        assert set(before.entries) == {"pin", "card"} and len(before) == 5
        assert set(after.entries) == {"card", "fee"} and len(after) == 3
        q = query("How do I reset my PIN?", embed)
        assert before.search(q, 1)[0][0].entry_id == "pin"  # a reader holding the old snapshot
        assert after.search(q, 3)[0][0].entry_id != "pin"
        await registry.close()

    run(scenario)


def test_concurrent_readers_never_see_half_a_write(tmp_path):
    embed = FakeEmbed()

    async def scenario() -> None:
        registry = make_registry(tmp_path, embed)
        await registry.load_all()
        await registry.create("faq", CorpusConfig())
        await registry.upsert("faq", [Entry("x", "version 0", (), "answer 0")])

        async def writer() -> None:
            for i in range(1, 30):
                await registry.upsert("faq", [Entry("x", f"version {i}", (), f"answer {i}")])

        async def reader() -> int:
            seen = 0
            for _ in range(60):
                _, (found,) = await registry.search("faq", query("version 3", embed), 1)
                (candidate,) = found
                assert candidate.matched_question.split()[1] == candidate.answer.split()[1]
                seen += 1
                await asyncio.sleep(0)
            return seen

        results = await asyncio.gather(writer(), reader(), reader())
        assert results[1:] == [60, 60]
        await registry.close()

    run(scenario)


def test_reload_uses_index_files_and_rebuilds_stale_ones_without_reembedding(tmp_path):
    embed = FakeEmbed()

    async def write() -> list[str]:
        registry = make_registry(tmp_path, embed)
        await registry.load_all()
        await registry.create("faq", CorpusConfig(answer_threshold=0.7))
        await registry.upsert("faq", ENTRIES)
        _, (found,) = await registry.search("faq", query("card not arrived", embed), 3)
        await registry.close()  # flushes the background index save
        return [c.entry_id for c in found]

    async def reload() -> tuple[list[str], CorpusRegistry]:
        registry = make_registry(tmp_path, embed)
        await registry.load_all()
        config, (found,) = await registry.search("faq", query("card not arrived", embed), 3)
        assert config.answer_threshold == 0.7
        await registry.close()
        return [c.entry_id for c in found], registry

    expected = run(write)
    manifest = json.loads((tmp_path / "indexes" / "faq.manifest.json").read_text())
    assert (manifest["count"], manifest["fingerprint"], manifest["generation"]) == (6, "m1", 1)
    embedded = len(embed.texts)
    assert run(reload)[0] == expected
    (tmp_path / "indexes" / "faq.faiss").unlink()  # missing index file
    assert run(reload)[0] == expected
    manifest["generation"] = 0  # stale index file
    (tmp_path / "indexes" / "faq.manifest.json").write_text(json.dumps(manifest))
    assert run(reload)[0] == expected
    assert len(embed.texts) == embedded  # vectors came from SQLite each time
    assert json.loads((tmp_path / "indexes" / "faq.manifest.json").read_text())["generation"] == 1


@pytest.mark.parametrize("new_dim", [8, 12])
def test_model_change_reembeds_in_background_and_serves_the_old_snapshot(tmp_path, new_dim):
    old = FakeEmbed()

    async def write() -> None:
        registry = make_registry(tmp_path, old)
        await registry.load_all()
        await registry.create("faq", CorpusConfig())
        await registry.upsert("faq", ENTRIES)
        await registry.close()

    async def upgrade() -> None:
        new = FakeEmbed(dim=new_dim, salt="v2")
        new.gate = asyncio.Event()
        registry = make_registry(tmp_path, new, fingerprint="m2")
        await registry.load_all()
        assert registry.info("faq").status == "reembedding"
        if new_dim == old.dim:  # the old snapshot keeps answering meanwhile
            _, (found,) = await registry.search("faq", query("Where is my card?", old), 1)
            assert found[0].entry_id == "card"
        else:  # old vectors cannot be searched with the new model's queries
            with pytest.raises(NotReady, match="re-embedded"):
                await registry.search("faq", query("x", new), 1)
        new.gate.set()
        await wait_for(lambda: registry.info("faq").status == "ready")
        assert sorted(new.texts) == sorted(t for e in ENTRIES for t in e.texts())
        assert registry.info("faq").record.fingerprint == "m2"
        _, (found,) = await registry.search("faq", query("Where is my card?", new), 1)
        assert found[0].entry_id == "card" and found[0].score == pytest.approx(1.0, abs=1e-5)
        await registry.close()

    run(write)
    run(upgrade)


def test_delete_removes_entries_files_and_metric_series(tmp_path):
    metrics = Metrics()

    async def scenario() -> None:
        registry = make_registry(tmp_path, FakeEmbed(), metrics=metrics)
        await registry.load_all()
        await registry.create("faq", CorpusConfig())
        await registry.upsert("faq", ENTRIES)
        await registry.close()
        assert (tmp_path / "indexes" / "faq.faiss").exists()
        assert b'flipmatch_corpus_entries{corpus="faq"} 3.0' in metrics.render()
        await registry.delete("faq")
        with pytest.raises(NotFound):
            await registry.search("faq", np.zeros((1, 8), np.float32), 1)
        assert not (tmp_path / "indexes" / "faq.faiss").exists()
        assert b'corpus="faq"' not in metrics.render()
        await registry.create("faq", CorpusConfig())  # the name is free again
        assert registry.info("faq").entries == 0

    run(scenario)


@pytest.mark.parametrize(("inline_limit", "on_loop"), [(10_000, True), (5, False)])
def test_small_searches_run_on_the_event_loop_and_large_ones_on_a_thread(tmp_path, monkeypatch, inline_limit,
                                                                           on_loop):
    """A search over a few thousand vectors takes microseconds, less than a thread hop; a big one must not block
    the loop. Same results either way."""
    import threading

    from service.corpus import registry as registry_module
    from service.corpus.snapshot import Snapshot

    monkeypatch.setattr(registry_module, "INLINE_SEARCH_VECTORS", inline_limit)
    where: list[int] = []
    real = Snapshot.search

    def recording(self, queries, k):
        where.append(threading.get_ident())
        return real(self, queries, k)

    monkeypatch.setattr(Snapshot, "search", recording)
    embed = FakeEmbed()

    async def scenario() -> None:
        registry = make_registry(tmp_path, embed)
        await registry.load_all()
        await registry.create("faq", CorpusConfig())
        await registry.upsert("faq", ENTRIES)  # 6 vectors
        _, (candidates,) = await registry.search("faq", query("forgot my pin", embed), 3)
        assert candidates[0].entry_id == "pin"
        assert (where[-1] == threading.get_ident()) is on_loop
        await registry.close()

    run(scenario)
