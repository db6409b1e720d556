"""Operational routes: liveness, readiness, Prometheus metrics, and what model is served."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.api.deps import EngineDep, StateDep
from service.api.schemas.common import ERROR_RESPONSES
from service.api.schemas.info import CalibrationCandidate, ComputeChoice, HealthResponse, InfoResponse, StoreStatus
from service.metrics import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=HealthResponse)
async def live() -> HealthResponse:
    """200 while the process serves HTTP."""
    return HealthResponse(status="ok")


@router.get("/health/ready", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def ready(state: StateDep) -> Response:
    """200 once the model is loaded and warmed up and corpora are reloaded; 503 before that and during shutdown.
    With a shared PostgreSQL store the body also reports the replica's applied change sequence and lag; it stays
    200 while the database is unreachable, because searches keep working from memory."""
    extra = {}
    if state.follower is not None:  # stays ready while the database is away: searches still work from memory
        f = state.follower.status
        extra["store"] = StoreStatus(applied_sequence=f.applied_sequence, head_sequence=f.head_sequence,
                                     lag_changes=f.head_sequence - f.applied_sequence, lag_seconds=f.lag_seconds,
                                     reachable=f.reachable).model_dump()
    if state.readiness.ready:
        return JSONResponse({"status": "ok", **extra})
    return JSONResponse({"status": state.readiness.reason(), **extra}, status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(state: StateDep) -> Response:
    """Prometheus exposition (flipmatch_* metrics)."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/info", response_model=InfoResponse, responses=ERROR_RESPONSES)
async def info(engine: EngineDep) -> InfoResponse:
    """The served model: name, dimension, device, dtype, max length, fingerprint, default match threshold, and
    the start-up calibration's measured choice of dtype and forward threads (`compute`)."""
    i = engine.info
    compute = ComputeChoice(
        selection=i.selection, reason=i.reason, threads=i.threads, batch_overhead_tokens=i.batch_overhead_tokens,
        packed=i.packed, prepacked=i.prepacked, forward_workers=engine.forward_workers,
        forward_processes=engine.forward_processes,
        calibration_seconds=i.calibration_seconds,
        candidates=[CalibrationCandidate(dtype=c.dtype, threads=c.threads, workers=c.workers, ms=list(c.ms),
                                         min_cosine=c.min_cosine, passed=c.passed) for c in i.calibration])
    return InfoResponse(model=i.model, dimension=i.dimension, device=i.device, dtype=i.dtype, compute=compute,
                        max_seq_length=i.max_seq_length, fingerprint=i.fingerprint, match_threshold=i.match_threshold)
