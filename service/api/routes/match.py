"""POST /v1/match: cosine similarity and a same-meaning flag for text pairs."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request

from service.api.deps import EngineDep, QueryKey, SettingsDep, check_count, until_disconnect
from service.api.schemas.common import ERROR_RESPONSES, Usage
from service.api.schemas.matching import MatchRequest, MatchResponse, MatchResult

router = APIRouter(prefix="/v1", tags=["matching"])


@router.post("/match", response_model=MatchResponse, responses=ERROR_RESPONSES, dependencies=[QueryKey])
async def match_pairs(body: MatchRequest, request: Request, engine: EngineDep, settings: SettingsDep) -> MatchResponse:
    """Compare each pair {a, b}: cosine similarity, and `match` when it reaches the threshold (the request's, else
    the model card's match_threshold). Texts repeated across pairs are embedded once."""
    check_count(len(body.pairs), "pairs", settings.limits)
    unique = list(dict.fromkeys(text for pair in body.pairs for text in (pair.a, pair.b)))
    position = {text: i for i, text in enumerate(unique)}
    result = await until_disconnect(request, engine.embed(unique))
    vectors = result.vectors / np.maximum(np.linalg.norm(result.vectors, axis=1, keepdims=True), 1e-12)
    threshold = body.threshold if body.threshold is not None else engine.info.match_threshold
    data = []
    for i, pair in enumerate(body.pairs):
        similarity = float(np.dot(vectors[position[pair.a]], vectors[position[pair.b]]))
        data.append(MatchResult(index=i, similarity=similarity, match=similarity >= threshold))
    return MatchResponse(data=data, threshold=threshold, model=engine.info.model,
                         usage=Usage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
                         truncated=result.truncated)
