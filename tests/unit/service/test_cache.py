"""QueryCache bounds and keys, and the engine's use of it (fake encoder): repeats skip the model, vectors agree."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from service.engine.cache import QueryCache, normalise
from service.engine.engine import EmbeddingEngine
from service.metrics import Metrics


def vec(value: float, dim: int = 4) -> np.ndarray:
    return np.full(dim, value, np.float32)


def test_normalise_folds_unicode_and_whitespace_but_keeps_case():
    assert normalise("  How\tdo I\n\nreset  my PIN? ") == "How do I reset my PIN?"
    assert normalise("cafe\u0301") == "caf\u00e9"  # NFC
    assert normalise("PIN") != normalise("pin")
    assert normalise(" \t ") == ""


def test_lru_evicts_the_least_recently_used_entry():
    cache = QueryCache(fingerprint="m", max_entries=2, max_bytes=1 << 20)
    cache.put("a", vec(1), 3)
    cache.put("b", vec(2), 3)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", vec(3), 3)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2


def test_byte_bound_holds():
    one = QueryCache(fingerprint="m", max_entries=100, max_bytes=1 << 20)
    one.put("x", vec(1, 256), 1)
    entry_bytes = one.bytes
    cache = QueryCache(fingerprint="m", max_entries=100, max_bytes=3 * entry_bytes + 10)
    for i in range(10):
        cache.put(str(i), vec(i, 256), 1)
        assert cache.bytes <= 3 * entry_bytes + 10
    assert len(cache) == 3 and cache.get("9") is not None and cache.get("0") is None
    huge = QueryCache(fingerprint="m", max_entries=100, max_bytes=100)
    huge.put("big", vec(1, 256), 1)  # larger than the whole cache: not kept
    assert len(huge) == 0 and huge.bytes == 0


def test_replacing_a_key_keeps_the_byte_count_exact():
    cache = QueryCache(fingerprint="m", max_entries=10, max_bytes=1 << 20)
    cache.put("a", vec(1), 1)
    before = cache.bytes
    cache.put("a", vec(2), 1)
    assert cache.bytes == before and len(cache) == 1
    np.testing.assert_allclose(cache.get("a")[0], vec(2))


def test_cached_vectors_are_read_only_copies():
    cache = QueryCache(fingerprint="m", max_entries=10, max_bytes=1 << 20)
    original = vec(1)
    cache.put("a", original, 1)
    original[:] = 5
    stored = cache.get("a")[0]
    np.testing.assert_allclose(stored, vec(1))
    assert not stored.flags.writeable


def test_zero_size_disables_it():
    assert not QueryCache(fingerprint="m", max_entries=0, max_bytes=100).enabled
    assert not QueryCache(fingerprint="m", max_entries=10, max_bytes=0).enabled


def engine_with_cache(encoder: Any, metrics: Metrics, **cache: int) -> EmbeddingEngine:
    sizes = {"max_entries": 100, "max_bytes": 1 << 20, **cache}
    return EmbeddingEngine(encoder, max_batch_tokens=64, max_batch_size=4, max_wait_ms=1, max_queue=16,
                           max_text_chars=40, truncate=True, metrics=metrics,
                           cache=QueryCache(fingerprint=encoder.info.fingerprint, **sizes))


def counter(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    return float(value or 0.0)


def test_engine_serves_repeats_from_the_cache(fake_encoder):
    encoder = fake_encoder()
    metrics = Metrics()

    async def scenario() -> tuple[Any, Any]:
        engine = engine_with_cache(encoder, metrics)
        await engine.start()
        try:
            first = await engine.embed(["where is my card", "top up failed"])
            calls = len(encoder.calls)
            again = await engine.embed(["top up  failed", "where is my card", "where is my card", "new one"])
            assert len(encoder.calls) == calls + 1 and encoder.calls[-1] == ["new one"]  # only the miss ran
            return first, again
        finally:
            await engine.stop()

    first, again = asyncio.run(scenario())
    np.testing.assert_allclose(again.vectors[0], first.vectors[1])
    np.testing.assert_allclose(again.vectors[1], first.vectors[0])
    np.testing.assert_allclose(again.vectors[3], encoder.vector("new one"))
    assert again.prompt_tokens == sum(len(t.split()) + 2 for t in ["top up failed", "where is my card",
                                                                    "where is my card", "new one"])
    assert counter(metrics, "flipmatch_query_cache_hits_total") == 3
    assert counter(metrics, "flipmatch_query_cache_misses_total") == 3


def test_a_request_repeating_a_text_computes_it_once(fake_encoder):
    encoder = fake_encoder()

    async def scenario() -> Any:
        engine = engine_with_cache(encoder, Metrics())
        await engine.start()
        try:
            return await engine.embed(["same text", "same  text", "same text"])
        finally:
            await engine.stop()

    result = asyncio.run(scenario())
    assert [t for call in encoder.calls for t in call].count("same text") == 1
    assert result.vectors.shape == (3, 16)


def test_a_different_model_never_sees_anothers_vectors():
    cache_a = QueryCache(fingerprint="model-a", max_entries=10, max_bytes=1 << 20)
    cache_a.put("q", vec(1), 1)
    assert cache_a.get("q") is not None
    shared_items = cache_a._items  # the same storage under another fingerprint: keys differ
    cache_b = QueryCache(fingerprint="model-b", max_entries=10, max_bytes=1 << 20)
    cache_b._items = shared_items
    assert cache_b.get("q") is None
