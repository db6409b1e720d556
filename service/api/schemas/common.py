"""Schema parts shared by several resources: usage accounting, the error body, text and text-list types.

Request bodies are strict (no bool -> number or number -> string coercion) and every rule a validator here
enforces is also stated in the JSON Schema, so the OpenAPI document and the server agree on what is valid."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

# Characters no tokenizer, database or UTF-8 encoder accepts in text: half UTF-16 pairs ("\ud800", which JSON may
# escape and Python decodes) and NUL (PostgreSQL text and jsonb refuse it; SQLite C strings end at it).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")

# A text must hold a character outside this class: exactly the characters Python's str.isspace() (and so
# str.strip()) treats as blank, spelled out so JSON Schema validators (ECMA-262 regexes) agree with the server.
NON_BLANK = r"[^\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# Marker on a schema node naming the setting that bounds it; service/api/openapi.py replaces it with the value
# this server runs with (maxItems, maximum, maxLength or enum), so the document states the live limits.
LIMIT = "x-flipmatch-limit"


def _replace_unstorable(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_unstorable(v) for v in value]
    if isinstance(value, dict):
        return {_replace_unstorable(k): _replace_unstorable(v) for k, v in value.items()}
    return value


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are errors, and characters no store can keep (half UTF-16 pairs
    and NUL) become U+FFFD on every store, so what a write acknowledges is what reads back."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        return _replace_unstorable(data)


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


def _whole_number(value: Any) -> Any:
    """JSON Schema's integer includes 5.0; strict int would refuse it. Booleans and strings stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A request integer: 5 or 5.0, never true or "5".
Integer = Annotated[int, BeforeValidator(_whole_number)]


def _non_empty(text: str) -> str:
    text_list(text)
    return text


_TEXT_SCHEMA = {"type": "string", "minLength": 1, "pattern": NON_BLANK, LIMIT: "max_text_chars"}
# One non-blank text (the schema states it; the validator gives the actionable message).
Text = Annotated[str, AfterValidator(_non_empty), WithJsonSchema(_TEXT_SCHEMA)]
# `input`-style field: one text or 1..FLIPMATCH_LIMITS__MAX_TEXTS texts.
Texts = Annotated[str | list[str], BeforeValidator(text_list), WithJsonSchema({"anyOf": [
    _TEXT_SCHEMA, {"type": "array", "items": _TEXT_SCHEMA, "minItems": 1, LIMIT: "max_texts"}]})]


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
