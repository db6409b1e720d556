"""Corpus resources: create, list, get, update (PATCH), delete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import AdminKey, CorporaDep, EngineDep, QueryKey, StateDep
from service.api.routes.paths import CorpusName
from service.api.schemas.common import ERROR_RESPONSES
from service.api.schemas.corpora import CorporaPublic, CorpusCreate, CorpusPublic, CorpusUpdate, rerank_fields
from service.corpus.store import CorpusConfig
from service.errors import InvalidInput


def _check_rerank(enabled: bool, reranker: object) -> None:
    if enabled and reranker is None:
        raise InvalidInput("rerank.enabled needs a model with a match head, and the served model has none; export "
                           "one trained with loss.generative_weight > 0 (docs/artifact.md, match_head)",
                           code="rerank_unavailable")


router = APIRouter(prefix="/v1/corpora", tags=["corpora"], responses=ERROR_RESPONSES)

# OpenAPI links: what a client (or a stateful fuzzer) can call next with the corpus it just created.
_BY_NAME = {"name": "$response.body#/name"}
_CREATED_LINKS = {link: {"operationId": op, "parameters": _BY_NAME} for link, op in {
    "GetCorpus": "get_corpus", "UpdateCorpus": "update_corpus", "DeleteCorpus": "delete_corpus",
    "SearchCorpus": "search_corpus", "UpsertEntries": "upsert_entries", "ListEntries": "list_entries",
    "ImportEntries": "import_entries", "ExportEntries": "export_entries"}.items()}


@router.post("", response_model=CorpusPublic, status_code=201, dependencies=[AdminKey],
             responses={201: {"description": "The new corpus.", "links": _CREATED_LINKS}})
async def create_corpus(body: CorpusCreate, corpora: CorporaDep, engine: EngineDep, state: StateDep) -> CorpusPublic:
    """Create an empty corpus. answer_threshold defaults to the model card's match_threshold. 409 if it exists.
    rerank.enabled is refused (422) when the served model has no match head."""
    _check_rerank(body.rerank.enabled, state.reranker)
    threshold = body.answer_threshold if body.answer_threshold is not None else engine.info.match_threshold
    config = CorpusConfig(description=body.description, answer_threshold=threshold,
                          clarify_margin=body.clarify_margin, default_answer=body.default_answer,
                          **rerank_fields(body.rerank))
    return CorpusPublic.of(await corpora.create(body.name, config))


@router.get("", response_model=CorporaPublic, dependencies=[QueryKey])
async def list_corpora(corpora: CorporaDep) -> CorporaPublic:
    """All corpora with their settings, sizes and status."""
    data = [CorpusPublic.of(info) for info in corpora.list_all()]
    return CorporaPublic(data=data, count=len(data))


@router.get("/{name}", response_model=CorpusPublic, dependencies=[QueryKey])
async def get_corpus(name: CorpusName, corpora: CorporaDep) -> CorpusPublic:
    """One corpus."""
    return CorpusPublic.of(corpora.info(name))


@router.patch("/{name}", response_model=CorpusPublic, dependencies=[AdminKey])
async def update_corpus(name: CorpusName, body: CorpusUpdate, corpora: CorporaDep, state: StateDep) -> CorpusPublic:
    """Change description, answer_threshold, clarify_margin, default_answer or rerank; takes effect on the next
    search. rerank.enabled is refused (422) when the served model has no match head."""
    _check_rerank(body.rerank is not None and body.rerank.enabled, state.reranker)
    return CorpusPublic.of(await corpora.update(name, **body.changes()))


@router.delete("/{name}", status_code=204, dependencies=[AdminKey])
async def delete_corpus(name: CorpusName, corpora: CorporaDep) -> Response:
    """Delete a corpus, its entries and its index files."""
    await corpora.delete(name)
    return Response(status_code=204)
