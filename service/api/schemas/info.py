"""GET /v1/info and health bodies."""

from __future__ import annotations

from pydantic import BaseModel, Field


class InfoResponse(BaseModel):
    model: str = Field(description="Served model (artifact folder name or model id).")
    dimension: int
    device: str
    dtype: str
    max_seq_length: int = Field(description="Tokens per text; longer texts are truncated or refused.")
    fingerprint: str = Field(description="sha256 of the model files; corpora record it to detect model changes.")
    match_threshold: float = Field(description="Default /v1/match threshold (flipmatch.json).")


class HealthResponse(BaseModel):
    status: str = Field(description="ok, or why the service is not ready.")
