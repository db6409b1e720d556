"""What routes may read from the app (engine, corpora, settings, readiness) and the API-key checks, exposed as
Annotated aliases (EngineDep, CorporaDep, SettingsDep, AdminKey, QueryKey). Also: cancel work when the client
goes away."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.corpus.calibrator import Calibrator
from service.corpus.follower import StoreFollower
from service.corpus.registry import CorpusRegistry
from service.engine.engine import EmbeddingEngine
from service.errors import ClientDisconnected, Forbidden, InvalidInput, NotReady, Unauthorized
from service.metrics import Metrics
from service.settings import LimitsSettings, ServiceSettings

T = TypeVar("T")


@dataclass
class Readiness:
    """Ready = model loaded and warmed, corpora reloaded (demo corpora included), not shutting down."""

    engine_started: bool = False
    corpora_loaded: bool = False
    shutting_down: bool = False
    failed: str | None = None

    @property
    def ready(self) -> bool:
        return self.engine_started and self.corpora_loaded and not self.shutting_down and self.failed is None

    def reason(self) -> str:
        if self.shutting_down:
            return "shutting down"
        if self.failed:
            return f"start-up failed: {self.failed}"
        if not self.engine_started:
            return "loading the model"
        return "loading corpora"


@dataclass(frozen=True)
class ApiKeys:
    admin: str | None
    query: str | None
    dev_mode: bool


@dataclass
class AppState:
    settings: ServiceSettings
    metrics: Metrics
    keys: ApiKeys
    readiness: Readiness = field(default_factory=Readiness)
    engine: EmbeddingEngine | None = None
    registry: CorpusRegistry | None = None
    calibrator: Calibrator | None = None
    follower: StoreFollower | None = None  # only with a shared (PostgreSQL) store
    reranker: Any = None  # engine.reranker.MatchReranker when the model has a match head (not imported: torch)


# The dependencies are `async def` although they only read attributes: FastAPI runs a plain `def` dependency on its
# thread pool, one thread hop per dependency per request, each a wake-up and GIL hand-offs while the forward
# passes run (a search request made five such hops).
async def get_state(request: Request) -> AppState:
    return request.app.state.flipmatch  # type: ignore[no-any-return]


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> ServiceSettings:
    return state.settings


async def get_engine(state: StateDep) -> EmbeddingEngine:
    if state.engine is None or not state.readiness.engine_started or state.readiness.shutting_down:
        raise NotReady(f"the service is not ready ({state.readiness.reason()})")
    return state.engine


async def get_registry(state: StateDep) -> CorpusRegistry:
    if state.registry is None or not state.readiness.corpora_loaded or state.readiness.shutting_down:
        raise NotReady(f"corpora are not available yet ({state.readiness.reason()})")
    return state.registry


async def get_calibrator(state: StateDep, _ready: Annotated[CorpusRegistry, Depends(get_registry)]) -> Calibrator:
    assert state.calibrator is not None  # set with the registry, so ready corpora imply a calibrator
    return state.calibrator


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
EngineDep = Annotated[EmbeddingEngine, Depends(get_engine)]
CorporaDep = Annotated[CorpusRegistry, Depends(get_registry)]
CalibratorDep = Annotated[Calibrator, Depends(get_calibrator)]

# One pair of security schemes per scope, so the OpenAPI document says which key an operation needs (the
# header is the same; service/api/openapi.py reads these names to mark where a key is optional).
ADMIN_SCHEMES = ("AdminBearer", "AdminApiKey")
QUERY_SCHEMES = ("QueryBearer", "QueryApiKey")
_admin_bearer = HTTPBearer(auto_error=False, scheme_name=ADMIN_SCHEMES[0],
                           description="Authorization: Bearer <admin key>")
_admin_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name=ADMIN_SCHEMES[1],
                              description="X-API-Key: <admin key>")
_query_bearer = HTTPBearer(auto_error=False, scheme_name=QUERY_SCHEMES[0],
                           description="Authorization: Bearer <query key or admin key>")
_query_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name=QUERY_SCHEMES[1],
                              description="X-API-Key: <query key or admin key>")


def _presented(bearer: HTTPAuthorizationCredentials | None, api_key: str | None) -> str | None:
    return bearer.credentials if bearer is not None else api_key


def _same(given: str, key: str | None) -> bool:
    return key is not None and hmac.compare_digest(given.encode(), key.encode())  # constant time


async def require_admin(
    state: StateDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)],
    api_key: Annotated[str | None, Depends(_admin_api_key)],
) -> None:
    keys = state.keys
    if keys.admin is None:
        if keys.dev_mode:
            return
        raise Forbidden("write routes are disabled: no admin key is configured. Set FLIPMATCH_AUTH__ADMIN_KEY "
                        "(or FLIPMATCH_AUTH__ADMIN_KEY_FILE), or FLIPMATCH_DEV_MODE=true for local development",
                        code="writes_disabled")
    given = _presented(bearer, api_key)
    if given is None:
        raise Unauthorized("this route needs the admin key: send 'Authorization: Bearer <key>' or 'X-API-Key'",
                           code="missing_api_key")
    if _same(given, keys.admin):
        return
    if _same(given, keys.query):
        raise Forbidden("this key has query scope only; write routes need the admin key", code="insufficient_scope")
    raise Unauthorized("the API key is not valid", code="invalid_api_key")


async def require_query(
    state: StateDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_query_bearer)],
    api_key: Annotated[str | None, Depends(_query_api_key)],
) -> None:
    keys = state.keys
    if keys.query is None:
        return  # query routes are open unless a query key is configured
    given = _presented(bearer, api_key)
    if given is None:
        raise Unauthorized("this route needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key'",
                           code="missing_api_key")
    if not (_same(given, keys.query) or _same(given, keys.admin)):
        raise Unauthorized("the API key is not valid", code="invalid_api_key")


AdminKey = Depends(require_admin)
QueryKey = Depends(require_query)


def check_count(count: int, what: str, limits: LimitsSettings) -> None:
    """Per-request item limit, checked before any work."""
    if count > limits.max_texts:
        raise InvalidInput(f"{count} {what} in one call; the limit is {limits.max_texts} "
                           "(FLIPMATCH_LIMITS__MAX_TEXTS)", code="too_many_inputs")


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first, so its queued texts are dropped before
    compute. After the body is read, the next ASGI message is the disconnect (or nothing until we respond)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ClientDisconnected("the client disconnected before the answer was ready")
    return task.result()
