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


class StoreStatus(BaseModel):
    """How far this replica has followed the shared store's change sequence (PostgreSQL store only)."""

    applied_sequence: int = Field(description="Every change up to this sequence number is searchable here.")
    head_sequence: int = Field(description="The newest change-sequence number seen in the database.")
    lag_changes: int = Field(description="head_sequence - applied_sequence.")
    lag_seconds: float = Field(description="Age of the oldest change not applied yet; 0 when caught up.")
    reachable: bool = Field(
        description="The database answered the last call. When false, searches keep serving from memory and "
        "writes get 503 with Retry-After."
    )


class HealthResponse(BaseModel):
    status: str = Field(description="ok, or why the service is not ready.")
    store: StoreStatus | None = Field(
        None, description="Readiness only, with a shared PostgreSQL store: the replica's applied sequence and lag."
    )
