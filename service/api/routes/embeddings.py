"""POST /v1/embeddings: OpenAI-compatible embeddings."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request

from service.api.deps import EngineDep, QueryKey, SettingsDep, check_count, until_disconnect
from service.api.schemas.common import ERROR_RESPONSES, Usage
from service.api.schemas.embeddings import EmbeddingData, EmbeddingRequest, EmbeddingResponse
from service.errors import InvalidInput

router = APIRouter(prefix="/v1", tags=["embeddings"])


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()  # type: ignore[no-any-return]


@router.post("/embeddings", response_model=EmbeddingResponse, responses=ERROR_RESPONSES, dependencies=[QueryKey])
async def create_embeddings(
    body: EmbeddingRequest, request: Request, engine: EngineDep, settings: SettingsDep
) -> EmbeddingResponse:
    """Embed one text or a list of texts. Vectors are exactly what the model outputs (unit length when the model
    ends with Normalize). Texts over the length limits are truncated and counted in `truncated`, or refused with
    422 when FLIPMATCH_LIMITS__TRUNCATE=false."""
    texts = body.texts()
    check_count(len(texts), "texts", settings.limits)
    if body.dimensions is not None and body.dimensions != engine.info.dimension:
        raise InvalidInput(f"dimensions={body.dimensions} is not available: this model outputs "
                           f"{engine.info.dimension} dimensions", code="invalid_dimensions")
    result = await until_disconnect(request, engine.embed(texts))
    return EmbeddingResponse(
        data=[EmbeddingData(index=i, embedding=_encode(v, body.encoding_format)) for i, v in enumerate(result.vectors)],
        model=engine.info.model,
        usage=Usage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
        truncated=result.truncated,
    )
