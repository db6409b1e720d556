"""POST /v1/corpora/{name}/calibrate (admin) and GET /v1/corpora/{name}/calibration: choose a corpus's
answer_threshold and clarify_margin for a target answer precision, and read the stored result and curve."""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from service.api.deps import AdminKey, CalibratorDep, CorporaDep, QueryKey, SettingsDep
from service.api.routes.paths import CorpusName
from service.api.schemas.calibration import CalibrationPublic, CalibrationQueries, inline_schema
from service.api.schemas.common import ERROR_RESPONSES
from service.corpus.calibrator import LabelledQuery
from service.errors import InvalidInput, NotFound

router = APIRouter(prefix="/v1/corpora/{name}", tags=["calibration"], responses=ERROR_RESPONSES)

_CSV_EXAMPLE = "query,expected_id\nmy card still has not come,card_arrival\nwho won the match last night,\n"


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']}"


def _from_csv(data: bytes) -> CalibrationQueries:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"the body is not UTF-8 (byte {err.start})", code="invalid_encoding") from err
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "query" not in reader.fieldnames:
        raise InvalidInput("the CSV needs a header row with a 'query' column (and 'expected_id'; empty means out "
                           "of scope)", code="invalid_csv")
    rows = []
    for row in reader:
        expected = (row.get("expected_id") or "").strip()
        rows.append({"query": row.get("query") or "", "expected_id": expected or None})
    try:
        return CalibrationQueries.model_validate({"queries": rows})
    except ValidationError as err:
        raise InvalidInput(f"CSV row {_first_error(err)}", code="invalid_calibration") from err


def _from_json(data: bytes) -> CalibrationQueries:
    if not data.strip():
        return CalibrationQueries()
    try:
        return CalibrationQueries.model_validate_json(data)
    except ValidationError as err:
        raise InvalidInput(_first_error(err), code="invalid_calibration") from err


@router.post("/calibrate", response_model=CalibrationPublic, dependencies=[AdminKey], openapi_extra={
    "requestBody": {"required": False, "content": {
        "application/json": {"schema": inline_schema(CalibrationQueries),
                             "example": {"queries": [{"query": "my card still has not come",
                                                      "expected_id": "card_arrival"},
                                                     {"query": "who won the match last night", "expected_id": None}]}},
        "text/csv": {"schema": {"type": "string", "description": "UTF-8 CSV with a header row: query, expected_id "
                                "(empty: out of scope)."}, "example": _CSV_EXAMPLE}}}})
async def calibrate_corpus(
    name: CorpusName, request: Request, corpora: CorporaDep, calibrator: CalibratorDep, settings: SettingsDep,
    target_precision: Annotated[float, Query(ge=0.0, le=1.0, description="Answer precision to reach.")] = 0.9,
    target_no_match: Annotated[float, Query(ge=0.0, le=1.0, description="Share of out-of-scope queries that must "
                                            "get no_match.")] = 0.9,
) -> CalibrationPublic:
    """Choose answer_threshold and clarify_margin with the most coverage at the target precision and no-match
    rate, apply them to the corpus and store them with the precision / coverage / no-match curve (kept across
    restarts, redone when the model changes). Body: labelled queries as JSON ({"queries": [{"query",
    "expected_id"}]}) or CSV (columns query, expected_id); an empty expected_id marks an out-of-scope query.
    No body: self-calibration on the corpus's own questions (leave-one-out) and off-topic negatives."""
    corpora.info(name)  # 404 before parsing
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data = await request.body()
    body = _from_csv(data) if content_type in ("text/csv", "application/csv") else _from_json(data)
    limit = settings.limits.max_calibration_queries
    if len(body.queries) > limit:
        raise InvalidInput(f"{len(body.queries)} calibration queries; the limit is {limit} "
                           "(FLIPMATCH_LIMITS__MAX_CALIBRATION_QUERIES)", code="too_many_inputs")
    queries = [LabelledQuery(q.query, q.expected_id) for q in body.queries]
    stored = await calibrator.calibrate(name, queries=queries, target_precision=target_precision,
                                        target_no_match=target_no_match)
    return CalibrationPublic.of(name, stored)


@router.get("/calibration", response_model=CalibrationPublic, dependencies=[QueryKey])
async def get_calibration(name: CorpusName, corpora: CorporaDep) -> CalibrationPublic:
    """The corpus's stored calibration: chosen thresholds, targets and the curve. 404 if never calibrated."""
    stored = await corpora.get_calibration(name)
    if stored is None:
        raise NotFound(f"corpus {name!r} has not been calibrated; POST /v1/corpora/{name}/calibrate",
                       code="calibration_not_found")
    return CalibrationPublic.of(name, dict(stored))
