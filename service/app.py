"""create_app(settings): the FastAPI app. Its lifespan builds Encoder -> EmbeddingEngine -> CorpusRegistry, puts
them on app.state, and reloads corpora (and demo corpora) in the background; readiness waits for all of it."""

from __future__ import annotations

import asyncio
import gc
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
from service.api.openapi import install_openapi, operation_id
from service.api.routes import calibration, corpora, embeddings, entries, health, match, search
from service.console import routes as console
from service.corpus.calibrator import Calibrator, load_pool
from service.corpus.follower import StoreFollower
from service.corpus.index import set_threads
from service.corpus.index_files import IndexFiles
from service.corpus.registry import CorpusRegistry
from service.corpus.sqlite_store import SQLiteStore
from service.corpus.store import ChangeFeed, CorpusStore
from service.engine.cache import QueryCache
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
                        cpu_threads=settings.threads(), packing=settings.batching.packing,
                        forward_workers=settings.batching.forward_workers, prepack=settings.cpu_prepack)


def _open_store(settings: ServiceSettings) -> CorpusStore:
    """SQLite in data_dir by default; the shared PostgreSQL database when store.url is set (migrated here)."""
    dsn = settings.store.dsn()
    if dsn is None:
        return SQLiteStore(settings.data_dir / "flipmatch.sqlite3")
    from service.corpus.postgres_store import PostgresStore  # psycopg is an optional extra

    return PostgresStore(dsn, connect_timeout_s=settings.store.connect_timeout_s,
                         statement_timeout_s=settings.store.statement_timeout_s)


async def _load_corpora(state: AppState, registry: CorpusRegistry, store: CorpusStore) -> None:
    settings = state.settings
    try:
        follower = None
        if isinstance(store, ChangeFeed):
            # Read before loading: changes committed during the load are applied again, which is harmless.
            start_seq = await asyncio.to_thread(store.head_sequence)
            follower = StoreFollower(store, registry, catchup_interval_s=settings.store.catchup_interval_s,
                                     metrics=state.metrics)
        await registry.load_all()
        if follower is not None:
            follower.start(start_seq)
            state.follower = follower
        if settings.demo.preload:
            assert state.engine is not None
            await demo.preload(registry, data_dir=settings.demo.data_dir,
                               answer_threshold=state.engine.info.match_threshold,
                               medquad_max_entries=settings.demo.medquad_max_entries,
                               banking77_max_alternates=settings.demo.banking77_max_alternates)
        assert state.calibrator is not None
        if settings.demo.preload and settings.demo.calibrate:
            await demo.calibrate(state.calibrator, registry)
        await state.calibrator.recalibrate_stale()
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
        info = loaded.info
        cache = QueryCache(fingerprint=info.fingerprint, max_entries=settings.cache.max_entries,
                           max_bytes=settings.cache.max_bytes)
        engine = EmbeddingEngine(loaded, max_batch_tokens=b.max_batch_tokens, max_batch_size=b.max_batch_size,
                                 max_wait_ms=b.max_wait_ms, max_queue=b.max_queue, max_text_chars=lim.max_text_chars,
                                 truncate=lim.truncate, metrics=state.metrics, cache=cache,
                                 batch_overhead_tokens=b.overhead_tokens(info.device, info.batch_overhead_tokens),
                                 max_packed_tokens=b.max_packed_tokens, forward_workers=b.forward_workers,
                                 forward_processes=b.forward_processes)
        await engine.start()
        state.metrics.model_info.labels(info.model, info.device, info.dtype, str(info.dimension),
                                        str(info.threads or ""), str(engine.forward_workers), str(info.packed).lower(),
                                        str(info.prepacked).lower(), str(engine.forward_processes).lower(),
                                        info.selection).set(1)
        state.engine = engine
        state.readiness.engine_started = True
        # What start-up built (the model, tokenizer, libraries: ~440k objects with the Gemma default) lives as
        # long as the process: a full collection scanned it for 240 ms, stalling every request; frozen, it is
        # never scanned again.
        gc.collect()
        gc.freeze()
        logger.info("froze %d start-up objects out of the garbage collector's scans", gc.get_freeze_count())

        async def embed(texts: Sequence[str]) -> tuple[np.ndarray, int]:
            result = await engine.embed_many(texts)
            return result.vectors, result.truncated

        set_threads(info.threads or settings.threads() or 1)  # FAISS search: the forward's count
        store = await asyncio.to_thread(_open_store, settings)
        state.metrics.store_reachable.set(1)
        registry = CorpusRegistry(store, IndexFiles(settings.data_dir / "indexes"), embed=embed,
                                  fingerprint=info.fingerprint, dimension=info.dimension,
                                  hnsw_threshold=settings.index.hnsw_threshold, max_corpora=lim.max_corpora,
                                  metrics=state.metrics)
        state.registry = registry
        state.calibrator = Calibrator(registry, embed=embed, pool=load_pool())
        registry.reembedded.append(state.calibrator.recalibrate)
        loader = asyncio.create_task(_load_corpora(state, registry, store), name="flipmatch-load-corpora")
        try:
            yield
        finally:
            state.readiness.shutting_down = True
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            if state.follower is not None:
                await state.follower.stop()
            await registry.close()  # stops re-embedding, flushes index saves
            await engine.stop()
            store.close()
            logger.info("stopped")

    app = FastAPI(
        title="FlipMatch",
        summary="FAQ text matching: embeddings, pair matching and FAQ search over named corpora.",
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.flipmatch = state
    for module in (health, embeddings, match, search, corpora, entries, calibration, console):
        app.include_router(module.router)
    install_error_handlers(app)
    install_openapi(app, state)
    # Added innermost first: RequestContext (ids, metrics) wraps CORS, which wraps the body limit.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.limits.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"])
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics)
    return app
