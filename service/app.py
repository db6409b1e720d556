"""create_app(settings): the FastAPI app. Its lifespan builds Encoder -> EmbeddingEngine -> CorpusRegistry, puts
them on app.state, and reloads corpora (and demo corpora) in the background; readiness waits for all of it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service import demo
from service.api.deps import ApiKeys, AppState
from service.api.errors import install_error_handlers
from service.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from service.api.routes import corpora, embeddings, entries, health, match, search
from service.corpus.index import set_threads
from service.corpus.index_files import IndexFiles
from service.corpus.registry import CorpusRegistry
from service.corpus.sqlite_store import SQLiteStore
from service.engine.engine import EmbeddingEngine, TextEncoder
from service.metrics import Metrics
from service.settings import ServiceSettings, read_key

logger = logging.getLogger(__name__)


def _keys(settings: ServiceSettings) -> ApiKeys:
    auth = settings.auth
    keys = ApiKeys(
        read_key(auth.admin_key, auth.admin_key_file, setting="FLIPMATCH_AUTH__ADMIN_KEY(_FILE)"),
        read_key(auth.query_key, auth.query_key_file, setting="FLIPMATCH_AUTH__QUERY_KEY(_FILE)"),
        settings.dev_mode,
    )
    if keys.admin is None:
        logger.warning("no admin key configured: write routes are %s",
                       "OPEN (dev_mode)" if settings.dev_mode else "refused with 403")
    return keys


def _load_encoder(settings: ServiceSettings) -> TextEncoder:
    from service.engine.encoder import load_encoder  # torch is imported here, not when the app module loads

    return load_encoder(settings.model_path, device=settings.device, dtype=settings.dtype,
                        cpu_threads=settings.threads())


async def _load_corpora(state: AppState, registry: CorpusRegistry) -> None:
    settings = state.settings
    try:
        await registry.load_all()
        if settings.demo.preload:
            assert state.engine is not None
            await demo.preload(registry, data_dir=settings.demo.data_dir,
                               answer_threshold=state.engine.info.match_threshold,
                               medquad_max_entries=settings.demo.medquad_max_entries,
                               banking77_max_alternates=settings.demo.banking77_max_alternates)
        state.readiness.corpora_loaded = True
        logger.info("ready corpora=%d", len(registry.list_all()))
    except asyncio.CancelledError:
        raise
    except Exception as err:  # readiness reports it; the traceback goes to the log
        state.readiness.failed = f"{type(err).__name__} while loading corpora (see log)"
        logger.exception("loading corpora failed")


def _load_reranker(encoder: TextEncoder) -> Any:
    """The artifact's match head (docs/artifact.md), or None; torch is only imported for a real encoder."""
    if not hasattr(encoder, "spec"):
        return None
    from service.engine.reranker import load_reranker

    return load_reranker(encoder)


def create_app(settings: ServiceSettings, *, encoder: TextEncoder | None = None) -> FastAPI:
    """`encoder` replaces loading `settings.model_path` (tests pass a fake)."""
    state = AppState(settings=settings, metrics=Metrics(), keys=_keys(settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Loading or parity failures raise here, so the server refuses to start instead of serving a wrong model.
        loaded = encoder if encoder is not None else await asyncio.to_thread(_load_encoder, settings)
        state.reranker = await asyncio.to_thread(_load_reranker, loaded)
        b, lim = settings.batching, settings.limits
        engine = EmbeddingEngine(loaded, max_batch_tokens=b.max_batch_tokens, max_batch_size=b.max_batch_size,
                                 max_wait_ms=b.max_wait_ms, max_queue=b.max_queue, max_text_chars=lim.max_text_chars,
                                 truncate=lim.truncate, metrics=state.metrics,
                                 batch_overhead_tokens=b.overhead_tokens(loaded.info.device))
        await engine.start()
        info = engine.info
        state.metrics.model_info.labels(info.model, info.device, info.dtype, str(info.dimension)).set(1)
        state.engine = engine
        state.readiness.engine_started = True

        async def embed(texts: Sequence[str]) -> tuple[np.ndarray, int]:
            result = await engine.embed_many(texts)
            return result.vectors, result.truncated

        set_threads(settings.threads())
        store = SQLiteStore(settings.data_dir / "flipmatch.sqlite3")
        registry = CorpusRegistry(store, IndexFiles(settings.data_dir / "indexes"), embed=embed,
                                  fingerprint=info.fingerprint, dimension=info.dimension,
                                  hnsw_threshold=settings.index.hnsw_threshold, max_corpora=lim.max_corpora,
                                  metrics=state.metrics)
        state.registry = registry
        loader = asyncio.create_task(_load_corpora(state, registry), name="flipmatch-load-corpora")
        try:
            yield
        finally:
            state.readiness.shutting_down = True
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            await registry.close()  # stops re-embedding, flushes index saves
            await engine.stop()
            store.close()
            logger.info("stopped")

    app = FastAPI(
        title="FlipMatch",
        summary="FAQ text matching: embeddings, pair matching and FAQ search over named corpora.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.flipmatch = state
    for module in (health, embeddings, match, search, corpora, entries):
        app.include_router(module.router)
    install_error_handlers(app)
    # Added innermost first: RequestContext (ids, metrics) wraps CORS, which wraps the body limit.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.limits.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"])
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics)
    return app
