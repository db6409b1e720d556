"""POST /v1/corpora/{name}/search bodies: candidates and an answer / clarify / no_match decision per query."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from service.api.schemas.common import LIMIT, Integer, RequestModel, Texts, Usage


class SearchRequest(RequestModel):
    query: Texts = Field(
        description="A question, or a list of questions (at most FLIPMATCH_LIMITS__MAX_TEXTS).",
        examples=["my card hasn't arrived yet"],
    )
    top_k: Integer = Field(5, ge=1, description="Candidates per query (distinct entries; at most "
                       "FLIPMATCH_LIMITS__MAX_TOP_K).", json_schema_extra={LIMIT: "max_top_k"})

    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else list(self.query)


class SearchCandidate(BaseModel):
    id: str = Field(description="Entry id.")
    question: str = Field(description="The entry's main question.")
    matched_question: str = Field(description="The question or alternate that matched best.")
    answer: str
    metadata: dict[str, Any]
    score: float = Field(description="Cosine similarity of the query and matched_question.")
    match_probability: float | None = Field(
        None, description="With the corpus's rerank enabled: the model's match-head probability that "
        "matched_question matches the query (candidates are ordered by it); otherwise null.")


class QueryResult(BaseModel):
    index: int
    outcome: Literal["answer", "clarify", "no_match"] = Field(
        description="answer: top-1 is confident; clarify: top-1 and top-2 are within the corpus's clarify_margin; "
        "no_match: top-1 is below the corpus's answer_threshold."
    )
    answer: str | None = Field(description="answer: the entry's answer; no_match: the corpus's default answer; "
                               "clarify: null.")
    entry_id: str | None = Field(description="The answering entry (outcome answer only).")
    options: list[str] = Field(description="clarify: the entry ids to choose between; otherwise empty.")
    candidates: list[SearchCandidate]


class SearchResponse(BaseModel):
    corpus: str
    results: list[QueryResult]
    model: str
    usage: Usage
    truncated: int = 0
