"""GET /v1/info and health bodies."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CalibrationCandidate(BaseModel):
    dtype: str
    threads: int = Field(description="Threads per forward pass.")
    workers: int = Field(description="Forward passes at once (the batch probe ran this many together).")
    ms: list[float] = Field(description="Median ms per forward pass of each probe batch: 1 text alone, then 12 texts "
                            "with every worker busy (wall time over workers).")
    min_cosine: float = Field(description="Worst cosine to the reference vectors (flipmatch.json probes).")
    passed: bool = Field(
        description="Parity held (cosine >= 0.999 in float32; 0.99 in bf16, fp16 or int8); only these can be chosen."
    )


class ComputeChoice(BaseModel):
    """How the service chose its CPU dtype and forward threads at start-up."""

    selection: str = Field(description="Per knob: requested (FLIPMATCH_DTYPE / FLIPMATCH_CPU_THREADS) or measured "
                           "by the start-up calibration; 'flags' where nothing was timed (CUDA).")
    reason: str = Field(description="The decision in words, with the timings it rests on.")
    threads: int | None = Field(description="CPU threads per forward pass; null where not managed (CUDA).")
    forward_workers: int = Field(description="Forward passes that run at once (FLIPMATCH_BATCHING__FORWARD_WORKERS "
                                 "or the calibration's choice).")
    forward_processes: bool = Field(description="Forward workers run as forked child processes, one GIL each "
                                    "(FLIPMATCH_BATCHING__FORWARD_PROCESSES; 1-thread CPU workers on Linux).")
    batch_overhead_tokens: float | None = Field(
        description="Fixed cost per forward pass in padded tokens, fitted from the calibration timings "
        "(the batcher's cost model); null when not measured.")
    packed: bool = Field(description="Forward passes run their texts as one unpadded row (FLIPMATCH_BATCHING__PACKING, "
                         "kept only where the model reproduced its padded vectors at load).")
    prepacked: bool = Field(description="Linear weights held in oneDNN's packed layout (FLIPMATCH_CPU_PREPACK, kept "
                            "only where the forward reproduced the eager vectors at load).")
    calibration_seconds: float = Field(description="Start-up time the calibration added after the first model load: "
                                       "the other dtypes' loads, the parity checks and the timed rounds.")
    candidates: list[CalibrationCandidate] = Field(description="Every timed configuration.")


class InfoResponse(BaseModel):
    model: str = Field(description="Served model (artifact folder name or model id).")
    dimension: int
    device: str
    dtype: str = Field(description="Served dtype: float32, bfloat16, float16 or int8 (see `compute`).")
    compute: ComputeChoice
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
