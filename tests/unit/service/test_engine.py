"""EmbeddingEngine on the fake encoder: order, limits and truncation, bulk chunking, start-up checks."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from service.engine.engine import EmbeddingEngine
from service.errors import ConfigError, InvalidInput
from service.metrics import Metrics


def engine_for(encoder: Any, **overrides: Any) -> EmbeddingEngine:
    options = {"max_batch_tokens": 64, "max_batch_size": 4, "max_wait_ms": 1, "max_queue": 16,
               "max_text_chars": 40, "truncate": True, "metrics": Metrics()}
    options.update(overrides)
    return EmbeddingEngine(encoder, **options)


async def started(engine: EmbeddingEngine) -> EmbeddingEngine:
    await engine.start()
    return engine


def test_vectors_come_back_in_input_order(fake_encoder):
    encoder = fake_encoder()
    texts = [f"text number {i} " + "word " * (i % 5) for i in range(10)]

    async def scenario() -> Any:
        engine = await started(engine_for(encoder))
        try:
            return await engine.embed(texts)
        finally:
            await engine.stop()

    result = asyncio.run(scenario())
    assert result.vectors.shape == (10, 16)
    for text, vector in zip(texts, result.vectors, strict=True):
        np.testing.assert_allclose(vector, encoder.vector(text))
    assert result.prompt_tokens == sum(len(t.split()) + 2 for t in texts)
    assert result.truncated == 0


def test_long_texts_are_truncated_and_counted(fake_encoder):
    encoder = fake_encoder(max_seq_length=8)
    metrics = Metrics()

    async def scenario() -> Any:
        engine = await started(engine_for(encoder, metrics=metrics))
        try:
            # one over the character limit, one over the token limit, one fine
            return await engine.embed(["x" * 100, "a b c d e f g h i j", "short"])
        finally:
            await engine.stop()

    result = asyncio.run(scenario())
    assert result.truncated == 2
    assert metrics.truncated_texts._value.get() == 2


@pytest.mark.parametrize(("text", "limit"), [("x" * 100, "FLIPMATCH_LIMITS__MAX_TEXT_CHARS"),
                                             ("a b c d e f g h i j", "tokens")])
def test_without_truncation_long_texts_are_refused(fake_encoder, text, limit):
    async def scenario() -> None:
        engine = await started(engine_for(fake_encoder(max_seq_length=8), truncate=False))
        try:
            await engine.embed([text])
        finally:
            await engine.stop()

    with pytest.raises(InvalidInput, match=limit):
        asyncio.run(scenario())


def test_batch_token_budget_below_model_length_is_refused(fake_encoder):
    with pytest.raises(ConfigError, match="FLIPMATCH_BATCHING__MAX_BATCH_TOKENS=16 .* at least 32"):
        engine_for(fake_encoder(max_seq_length=32), max_batch_tokens=16)


def test_embed_many_chunks_past_the_queue_bound(fake_encoder):
    encoder = fake_encoder()
    texts = [f"bulk {i}" for i in range(100)]  # far more than max_queue=16

    async def scenario() -> Any:
        engine = await started(engine_for(encoder))
        try:
            return await engine.embed_many(texts)
        finally:
            await engine.stop()

    result = asyncio.run(scenario())
    assert result.vectors.shape == (100, 16)
    np.testing.assert_allclose(result.vectors[57], encoder.vector("bulk 57"))
    assert max(len(batch) for batch in encoder.calls) <= 4


def test_cancelling_a_request_drops_its_texts(fake_encoder):
    import threading

    gate = threading.Event()
    gate.set()  # open for the warm-up pass
    encoder = fake_encoder(before_encode=lambda: gate.wait(timeout=10))

    async def scenario() -> None:
        engine = await started(engine_for(encoder, max_wait_ms=0))
        encoder.calls.clear()
        gate.clear()
        try:
            blocker = asyncio.ensure_future(engine.embed(["blocker"]))
            deadline = asyncio.get_running_loop().time() + 5
            while not encoder.calls:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.005)
            abandoned = asyncio.ensure_future(engine.embed(["abandoned one", "abandoned two"]))
            while engine.batcher.depth < 2:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.005)
            abandoned.cancel()  # what until_disconnect does when the client goes away
            gate.set()
            await blocker
            await engine.embed(["after"])
        finally:
            gate.set()
            await engine.stop()

    asyncio.run(scenario())
    computed = [t for batch in encoder.calls for t in batch]
    assert "abandoned one" not in computed and "abandoned two" not in computed
    assert "after" in computed


@pytest.mark.parametrize(("texts", "on_loop"), [(["How do I reset my PIN?"], True), (["word " * 500], False)])
def test_short_inputs_are_tokenized_on_the_event_loop_and_long_ones_on_a_thread(fake_encoder, monkeypatch, texts,
                                                                               on_loop):
    """A chat question tokenizes in microseconds, less than a thread hop; 2,500 characters go to a thread."""
    import threading

    encoder = fake_encoder()
    where: list[int] = []
    real = encoder.tokenize

    def recording(batch):
        where.append(threading.get_ident())
        return real(batch)

    monkeypatch.setattr(encoder, "tokenize", recording)

    async def scenario() -> int:
        engine = await started(engine_for(encoder, max_text_chars=4000))
        try:
            await engine.embed(texts)
            return threading.get_ident()
        finally:
            await engine.stop()

    loop_thread = asyncio.run(scenario())
    assert (where[-1] == loop_thread) is on_loop
