"""Corpus and entry resources: XCreate / XUpdate / XPublic and list wrappers with a total count."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from service.api.schemas.common import LIMIT, Integer, RequestModel, Text
from service.corpus.registry import CorpusInfo
from service.corpus.store import CORPUS_NAME, ENTRY_ID, CorpusConfig, Entry

_DEFAULTS = CorpusConfig()
MAX_ALTERNATES = 100


_RERANK_ENABLED = ("Reorder the top_k search candidates by the model's match head (needs a model exported with "
                   "a match_head; see docs/artifact.md).")
_RERANK_TOP_K = ("Candidates the match head scores per query; a search fetches max(top_k of the request, this) and "
                 "returns the request's top_k.")


class RerankSettings(RequestModel):
    # A server whose model has no match head refuses enabled=true (422 rerank_unavailable); its OpenAPI document
    # says so (enum [false], service/api/openapi.py).
    enabled: bool = Field(False, description=_RERANK_ENABLED + " Only false on a server whose model has none.",
                          json_schema_extra={LIMIT: "match_head"})
    top_k: Integer = Field(_DEFAULTS.rerank_top_k, ge=1, le=100, description=_RERANK_TOP_K)


class RerankPublic(BaseModel):
    enabled: bool = Field(description=_RERANK_ENABLED)
    top_k: int = Field(description=_RERANK_TOP_K)


def rerank_fields(rerank: RerankSettings) -> dict[str, Any]:
    return {"rerank_enabled": rerank.enabled, "rerank_top_k": rerank.top_k}


class CorpusCreate(RequestModel):
    name: str = Field(pattern=CORPUS_NAME.pattern, description="1-64 of a-z 0-9 _ -, starting with a letter or digit.",
                      examples=["banking-faq"])
    description: str = Field("", max_length=2000)
    answer_threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="Top-1 cosine below it answers no_match. Default: the model card's "
        "match_threshold.")
    clarify_margin: float = Field(_DEFAULTS.clarify_margin, ge=0.0, le=2.0,
                                  description="Top-1 minus top-2 below it answers clarify.")
    default_answer: str = Field(_DEFAULTS.default_answer, max_length=10_000,
                                description="Returned with no_match.")
    rerank: RerankSettings = Field(default_factory=RerankSettings, description="Match-head reranking (off).")


class CorpusUpdate(RequestModel):
    # An empty PATCH changes nothing and is refused; the schema says so.
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    description: str | None = Field(None, max_length=2000)
    answer_threshold: float | None = Field(None, ge=-1.0, le=1.0)
    clarify_margin: float | None = Field(None, ge=0.0, le=2.0)
    default_answer: str | None = Field(None, max_length=10_000)
    rerank: RerankSettings | None = None

    @model_validator(mode="after")
    def _something(self) -> CorpusUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to update; send at least one of description, answer_threshold, "
                             "clarify_margin, default_answer, rerank")
        return self

    def changes(self) -> dict[str, Any]:
        out = {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None and k != "rerank"}
        return {**out, **(rerank_fields(self.rerank) if self.rerank is not None else {})}


class CorpusPublic(BaseModel):
    name: str
    description: str
    answer_threshold: float
    clarify_margin: float
    default_answer: str
    rerank: RerankPublic
    entries: int
    vectors: int = Field(description="One per question and alternate question.")
    index_kind: Literal["flat", "hnsw"]
    status: str = Field(description="ready, reembedding (model changed; old snapshot served) or reembed_failed.")
    fingerprint: str = Field(description="Model whose vectors the corpus is indexed with.")
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, info: CorpusInfo) -> CorpusPublic:
        r, c = info.record, info.record.config
        return cls(name=r.name, description=c.description, answer_threshold=c.answer_threshold,
                   clarify_margin=c.clarify_margin, default_answer=c.default_answer,
                   rerank=RerankPublic(enabled=c.rerank_enabled, top_k=c.rerank_top_k), entries=info.entries,
                   vectors=info.vectors, index_kind=info.index_kind, status=info.status, fingerprint=r.fingerprint,
                   created_at=r.created_at, updated_at=r.updated_at)  # type: ignore[arg-type]


class CorporaPublic(BaseModel):
    data: list[CorpusPublic]
    count: int


class EntryFields(RequestModel):
    question: Text = Field(examples=["How long does card delivery take?"])
    alt_questions: list[Text] = Field(default_factory=list, max_length=MAX_ALTERNATES,
                                          description="Other phrasings; each is matched like the question.")
    answer: str = Field("", examples=["Cards arrive within 3-5 working days."])
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form JSON, returned with matches.")

    def to_entry(self, entry_id: str) -> Entry:
        return Entry(entry_id, self.question, tuple(self.alt_questions), self.answer, self.metadata)


class EntryCreate(EntryFields):
    """An entry in a bulk upsert or import. Without an id, one is derived from the question (stable)."""

    id: str | None = Field(None, pattern=ENTRY_ID.pattern, description="1-128 of A-Z a-z 0-9 . _ : @ -.")

    def to_entry(self, entry_id: str | None = None) -> Entry:
        derived = self.id or "q-" + hashlib.sha256(self.question.encode()).hexdigest()[:16]
        return super().to_entry(entry_id or derived)


class EntryPublic(EntryFields):
    id: str

    @classmethod
    def of(cls, entry: Entry) -> EntryPublic:
        return cls(id=entry.id, question=entry.question, alt_questions=list(entry.alt_questions),
                   answer=entry.answer, metadata=dict(entry.metadata))


def _entries(value: Any) -> Any:
    if isinstance(value, list) and not value:
        raise ValueError("the list is empty; send at least one entry")
    return value


# A bulk upsert body: at least one entry (checked first so the message says what to do).
EntryList = Annotated[list[EntryCreate], BeforeValidator(_entries), Field(min_length=1)]


class EntriesPublic(BaseModel):
    data: list[EntryPublic]
    count: int = Field(description="Entries in the corpus (all pages).")
    offset: int
    limit: int


class WriteResponse(BaseModel):
    entries: int = Field(description="Entries written (committed before this response).")
    vectors: int = Field(description="Vectors indexed for them.")
    truncated: int = Field(0, description="Texts cut to the character or token limit.")
