"""Calibration bodies: labelled queries in (JSON or CSV), thresholds and the precision / coverage / no-match
curve out."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from service.api.schemas.common import RequestModel
from service.api.schemas.common import Text as Question
from service.corpus.store import ENTRY_ID


class LabelledQueryIn(RequestModel):
    query: Question = Field(min_length=1, max_length=8192, description="Not blank.",
                            examples=["my card still has not come"])
    expected_id: str | None = Field(
        None, pattern=ENTRY_ID.pattern, description="The entry that should answer it; null: the query is out of "
        "scope (the right outcome is no_match).", examples=["card_arrival"])


class CalibrationQueries(RequestModel):
    queries: list[LabelledQueryIn] = Field(
        default_factory=list, description="Labelled queries (at most FLIPMATCH_LIMITS__MAX_CALIBRATION_QUERIES). "
        "Empty: self-calibration.")


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined, for an openapi_extra request body."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)  # type: ignore[no-any-return]


class CurvePointPublic(BaseModel):
    answer_threshold: float
    precision: float | None = Field(description="Correct answers / answers (answers to out-of-scope queries are "
                                    "wrong); null when nothing is answered.")
    coverage: float | None = Field(description="In-scope queries answered with the right entry / in-scope queries.")
    clarify: float | None = Field(description="In-scope queries answered clarify / in-scope queries.")
    no_match: float | None = Field(description="Out-of-scope queries answered no_match / out-of-scope queries.")


class CalibrationPublic(BaseModel):
    corpus: str
    source: Literal["self", "labelled"] = Field(
        description="self: leave-one-out questions of the corpus + the off-topic pool + other corpora; labelled: "
        "the queries sent.")
    answer_threshold: float = Field(description="Chosen; now the corpus's answer_threshold.")
    clarify_margin: float = Field(description="Chosen; now the corpus's clarify_margin.")
    target_precision: float
    target_no_match: float
    met: bool = Field(description="Both targets met with some coverage. False: the most precise point was chosen.")
    point: CurvePointPublic = Field(description="The metrics at the chosen thresholds.")
    positives: int = Field(description="In-scope calibration queries.")
    negatives: int = Field(description="Out-of-scope calibration queries.")
    sources: dict[str, Any] = Field(description="Where the calibration queries came from, with counts.")
    curve: list[CurvePointPublic] = Field(description="The metrics at clarify_margin for thresholds ascending.")
    fingerprint: str = Field(description="Model the calibration was made with; a new model recalibrates.")
    created_at: float
    labelled_queries: int = Field(description="Labelled queries stored to redo the calibration after a model change.")

    @classmethod
    def of(cls, corpus: str, stored: dict[str, Any]) -> CalibrationPublic:
        fields = {k: v for k, v in stored.items() if k in cls.model_fields}
        return cls(corpus=corpus, labelled_queries=len(stored.get("labelled", [])), **fields)
