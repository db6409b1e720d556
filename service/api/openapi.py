"""The app's OpenAPI document: what FastAPI derives from the routes, plus what depends on how this server runs,
so that clients generated from /openapi.json and schema fuzzers see the rules the server enforces:
- which key each operation needs, and when none is needed (`security` with an empty alternative);
- the per-request limits from the settings (texts per call, top_k, text length when truncation is off);
- the served model's dimension (`dimensions` must equal it);
- whether the served model has a match head (without one, a corpus's `rerank.enabled` can only be false)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from service.api.deps import ADMIN_SCHEMES, QUERY_SCHEMES, ApiKeys, AppState
from service.api.schemas.common import LIMIT
from service.settings import LimitsSettings

OPEN: dict[str, list[str]] = {}  # the empty security requirement: no key needed


def operation_id(route: APIRoute) -> str:
    """The handler's name (create_corpus, search_corpus): short, stable names for generated clients and links."""
    return route.name


def _key_rule(schemes: set[str], keys: ApiKeys) -> tuple[bool, str] | None:
    """(whether a request without a key is served, the sentence that says so), from the operation's schemes."""
    if schemes & set(QUERY_SCHEMES):
        if keys.query is None:
            return True, "Key: optional on this server (no query key is configured: FLIPMATCH_AUTH__QUERY_KEY)."
        return False, "Key: the query key or the admin key."
    if schemes & set(ADMIN_SCHEMES):
        if keys.admin is None:
            if keys.dev_mode:
                return True, "Key: optional on this server (dev mode without an admin key)."
            return False, "Key: none works: writes are disabled (no admin key is configured); answers 403."
        return False, "Key: the admin key."
    return None


def _apply_security(spec: dict[str, Any], keys: ApiKeys) -> None:
    for operations in spec["paths"].values():
        for operation in operations.values():
            security = operation.get("security", [])
            rule = _key_rule({name for requirement in security for name in requirement}, keys)
            if rule is None:
                continue
            open_, sentence = rule
            if open_:
                operation["security"] = [OPEN, *security]
            operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{sentence}".lstrip()


@dataclass(frozen=True)
class _Model:
    """What the document says about the served model; None: not loaded yet (left unconstrained)."""

    dimension: int | None = None
    match_head: bool | None = None


def _bound(node: dict[str, Any], name: str, limits: LimitsSettings, model: _Model) -> None:
    """Replace the LIMIT marker on `node` by the constraint the server enforces for that setting."""
    branches = node.get("anyOf", [node])
    for branch in branches:
        kind = branch.get("type")
        if name == "max_texts" and kind == "array":
            branch["maxItems"] = limits.max_texts
        elif name == "max_top_k" and kind == "integer":
            branch["maximum"] = limits.max_top_k
        elif name == "max_text_chars" and kind == "string" and not limits.truncate:
            branch["maxLength"] = limits.max_text_chars
        elif name == "dimension" and kind == "integer" and model.dimension is not None:
            branch["enum"] = [model.dimension]
        elif name == "match_head" and kind == "boolean" and model.match_head is False:
            branch["enum"] = [False]


def _apply_limits(node: Any, limits: LimitsSettings, model: _Model) -> None:
    if isinstance(node, dict):
        name = node.pop(LIMIT, None)
        if name is not None:
            _bound(node, name, limits, model)
        for value in node.values():
            _apply_limits(value, limits, model)
    elif isinstance(node, list):
        for value in node:
            _apply_limits(value, limits, model)


def install_openapi(app: FastAPI, state: AppState) -> None:
    """Serve the document built for this server's settings. It is cached once the model is loaded (before that
    the dimension and the match head are unknown and left out)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        _apply_security(spec, state.keys)
        engine = state.engine if state.readiness.engine_started else None
        model = _Model(engine.info.dimension, state.reranker is not None) if engine is not None else _Model()
        _apply_limits(spec, state.settings.limits, model)
        if model.dimension is not None:
            app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
