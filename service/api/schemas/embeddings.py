"""POST /v1/embeddings bodies, compatible with OpenAI's embeddings API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.api.schemas.common import LIMIT, Integer, RequestModel, Texts, Usage


class EmbeddingRequest(RequestModel):
    input: Texts = Field(
        description="A text or a list of texts (at most FLIPMATCH_LIMITS__MAX_TEXTS).",
        examples=["How do I activate my card?"],
    )
    model: str | None = Field(None, description="Accepted for OpenAI compatibility; the served model answers.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: a JSON array; base64: little-endian float32 bytes, base64-encoded."
    )
    dimensions: Integer | None = Field(None, ge=1, description="Must equal the model's dimension (GET /v1/info) when "
                                   "given.", json_schema_extra={LIMIT: "dimension"})
    user: str | None = Field(None, description="Accepted for OpenAI compatibility; ignored.")

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="The vector, or its base64 float32 bytes.")


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage
    truncated: int = Field(0, description="How many texts were cut to the character or token limit.")
