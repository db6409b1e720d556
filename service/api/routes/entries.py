"""Entry resources of a corpus: upsert (one or many), get, list, delete, bulk import and export."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from service.api.deps import AdminKey, CorporaDep, QueryKey
from service.api.routes.paths import CorpusName, EntryId
from service.api.schemas.common import ERROR_RESPONSES, ErrorResponse
from service.api.schemas.corpora import EntriesPublic, EntryCreate, EntryFields, EntryList, EntryPublic, WriteResponse
from service.corpus import formats
from service.corpus.registry import WriteSummary
from service.corpus.store import Entry
from service.errors import InvalidInput, UnsupportedMediaType

router = APIRouter(prefix="/v1/corpora/{name}", tags=["entries"], responses=ERROR_RESPONSES)

_MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
# Content-Type -> import format. The first of each is the documented one; the others are common aliases.
_CONTENT_TYPES = {"application/x-ndjson": "jsonl", "text/csv": "csv", "application/jsonl": "jsonl",
                  "application/jsonlines": "jsonl", "application/x-jsonlines": "jsonl", "application/csv": "csv"}
Format = Literal["jsonl", "csv"]


def _written(summary: WriteSummary) -> WriteResponse:
    return WriteResponse(entries=summary.entries, vectors=summary.vectors, truncated=summary.truncated)


# OpenAPI links: the entry a PUT wrote can be read back and deleted; a bulk write can be listed.
_ENTRY = {"name": "$request.path.name", "entry_id": "$request.path.entry_id"}
_PUT_LINKS = {"GetEntry": {"operationId": "get_entry", "parameters": _ENTRY},
              "DeleteEntry": {"operationId": "delete_entry", "parameters": _ENTRY}}
_LIST_LINKS = {"ListEntries": {"operationId": "list_entries", "parameters": {"name": "$request.path.name"}},
               "SearchCorpus": {"operationId": "search_corpus", "parameters": {"name": "$request.path.name"}}}


@router.put("/entries/{entry_id}", response_model=WriteResponse, dependencies=[AdminKey],
            responses={200: {"description": "Written.", "links": _PUT_LINKS}})
async def upsert_entry(name: CorpusName, entry_id: EntryId, body: EntryFields, corpora: CorporaDep) -> WriteResponse:
    """Create or replace one entry. Acknowledged once committed; searchable from the response on."""
    return _written(await corpora.upsert(name, [body.to_entry(entry_id)]))


@router.post("/entries", response_model=WriteResponse, dependencies=[AdminKey],
             responses={200: {"description": "Written.", "links": _LIST_LINKS}})
async def upsert_entries(name: CorpusName, body: EntryList, corpora: CorporaDep) -> WriteResponse:
    """Create or replace many entries in one transaction (all or none). An id repeated in the list: last wins."""
    return _written(await corpora.upsert(name, [e.to_entry() for e in body]))


@router.get("/entries", response_model=EntriesPublic, dependencies=[QueryKey])
async def list_entries(name: CorpusName, corpora: CorporaDep, offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> EntriesPublic:
    """Entries ordered by id, one page at a time."""
    entries, total = await corpora.list_entries(name, offset=offset, limit=limit)
    return EntriesPublic(data=[EntryPublic.of(e) for e in entries], count=total, offset=offset, limit=limit)


@router.get("/entries/{entry_id}", response_model=EntryPublic, dependencies=[QueryKey])
async def get_entry(name: CorpusName, entry_id: EntryId, corpora: CorporaDep) -> EntryPublic:
    """One entry."""
    return EntryPublic.of(await corpora.get_entry(name, entry_id))


@router.delete("/entries/{entry_id}", status_code=204, dependencies=[AdminKey])
async def delete_entry(name: CorpusName, entry_id: EntryId, corpora: CorporaDep) -> Response:
    """Delete one entry and its vectors."""
    await corpora.delete_entry(name, entry_id)
    return Response(status_code=204)


def _import_format(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _CONTENT_TYPES:
        return _CONTENT_TYPES[content_type]
    hint = " (the ?format= parameter is gone: the format comes from Content-Type)" if "format" in request.query_params \
        else ""
    raise UnsupportedMediaType(f"cannot import a {content_type or 'body without Content-Type'!r}{hint}; send "
                               "Content-Type: text/csv or application/x-ndjson", code="unsupported_media_type")


def _parse(data: bytes, fmt: str) -> list[Entry]:
    entries = []
    for line, record in formats.read(data, fmt):
        try:
            entries.append(EntryCreate.model_validate(record).to_entry())
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "entry"
            raise InvalidInput(f"line {line}: {where}: {first['msg']}", code="invalid_entry") from err
    if not entries:
        raise InvalidInput("the import holds no entries", code="empty_import")
    return entries


# The body is a file; `format: binary` lets generated clients send its bytes as they are.
_IMPORT_BODY = {"required": True, "description": "Entries as CSV or JSONL, all validated before any is written.",
                "content": {
    "text/csv": {"schema": {"type": "string", "format": "binary", "minLength": 1, "description": formats.CSV_HELP},
                 "example": "id,question,alt_questions,answer\na1,How do I reset my PIN?,forgot pin|new pin,"
                            "In the app.\n"},
    "application/x-ndjson": {"schema": {"type": "string", "format": "binary", "minLength": 1,
                                        "description": formats.JSONL_HELP},
                             "example": '{"id": "a1", "question": "How do I reset my PIN?", "alt_questions": '
                                        '["forgot pin"], "answer": "In the app.", "metadata": {}}\n'}}}


@router.post("/import", response_model=WriteResponse, dependencies=[AdminKey], openapi_extra={
    "requestBody": _IMPORT_BODY}, responses={
        200: {"description": "Written.", "links": _LIST_LINKS},
        415: {"model": ErrorResponse, "description": "Content-Type is not text/csv or application/x-ndjson (or an "
              "alias)."}})
async def import_entries(name: CorpusName, request: Request, corpora: CorporaDep) -> WriteResponse:
    """Bulk upsert from a CSV (Content-Type: text/csv) or JSONL (application/x-ndjson) body, in one transaction:
    every line is validated before anything is written, and errors name the line."""
    corpora.info(name)
    fmt = _import_format(request)  # before reading the body: a wrong media type costs no upload
    entries = _parse(await request.body(), fmt)
    return _written(await corpora.upsert(name, entries))


@router.get("/export", dependencies=[QueryKey], response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}})
async def export_entries(name: CorpusName, corpora: CorporaDep,
                         fmt: Annotated[Format, Query(alias="format", description="jsonl or csv.")] = "jsonl"
                         ) -> StreamingResponse:
    """Every entry, in a format /import reads back."""
    entries = await corpora.all_entries(name)
    return StreamingResponse(formats.write(entries, fmt), media_type=_MEDIA[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})
