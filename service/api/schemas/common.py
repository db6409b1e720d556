"""Schema parts shared by several resources: usage accounting, the error body, text-list validation."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are errors, and half UTF-16 pairs ("\\ud800", which JSON may
    escape and Python decodes to a string no tokenizer, database or UTF-8 encoder accepts) become U+FFFD."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, data: Any) -> Any:
        return _replace_surrogates(data)


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model read, special tokens included.")
    total_tokens: int = Field(description="Same as prompt_tokens (there is no completion).")


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, the limit involved and the setting that changes it.")
    type: str = Field(description="OpenAI-style category, e.g. invalid_request_error, rate_limit_error.")
    code: str | None = Field(description="Machine-readable code, e.g. too_many_inputs, corpus_not_found.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


def text_list(value: Any) -> Any:
    """Before-validator for `input`-style fields: a string or a non-empty list of non-empty strings.
    Token-id arrays (an OpenAI option) get a clear refusal instead of a type error."""
    if isinstance(value, list):
        if not value:
            raise ValueError("the list is empty; send at least one text")
        if any(isinstance(v, int) or isinstance(v, list) for v in value):
            raise ValueError("token-id input is not supported; send text strings")
        for i, v in enumerate(value):
            if isinstance(v, str) and not v.strip():
                raise ValueError(f"text {i} is empty")
    elif isinstance(value, str) and not value.strip():
        raise ValueError("the text is empty")
    return value


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "The body is not valid JSON (or not valid CSV/JSONL for an import).",
        401: "Missing or invalid API key.",
        403: "Key lacks the scope, or writes are disabled (no admin key and not dev mode).",
        404: "Unknown corpus or entry.",
        409: "The corpus already exists, or the corpus limit is reached.",
        413: "Body larger than FLIPMATCH_LIMITS__MAX_BODY_BYTES.",
        422: "Malformed input or a limit exceeded; the message names the limit and its setting.",
        429: "The embedding queue is full; retry after the Retry-After header.",
        503: "Not ready (loading, re-embedding, shutting down), or the shared corpus database is unreachable "
             "(code store_unavailable; writes only, searches still answer); retry after the Retry-After header.",
    }.items()
}
