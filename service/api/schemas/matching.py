"""POST /v1/match bodies: similarity and same-meaning decision for text pairs."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.api.schemas.common import LIMIT, RequestModel, Text, Usage


class TextPair(RequestModel):
    a: Text = Field(description="First text.")
    b: Text = Field(description="Second text.")


class MatchRequest(RequestModel):
    pairs: list[TextPair] = Field(min_length=1, description="Pairs to compare (at most FLIPMATCH_LIMITS__MAX_TEXTS).",
                                  json_schema_extra={LIMIT: "max_texts"})
    threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="Cosine at or above which a pair matches; default: the model card's "
        "match_threshold (flipmatch.json)."
    )
    model: str | None = Field(None, description="Accepted for compatibility; the served model answers.")


class MatchResult(BaseModel):
    index: int
    similarity: float = Field(description="Cosine similarity in [-1, 1].")
    match: bool = Field(description="similarity >= threshold.")


class MatchResponse(BaseModel):
    data: list[MatchResult]
    threshold: float
    model: str
    usage: Usage
    truncated: int = 0
