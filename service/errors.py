"""Domain exceptions of the service core. No HTTP status codes here: `api/errors.py` maps them."""

from __future__ import annotations


class FlipMatchError(Exception):
    """Base class. `message` is shown to the client, so it must be actionable and contain no internals."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(FlipMatchError):
    """The caller sent something we cannot process (too many texts, too long, bad format)."""

    code = "invalid_input"


class UnsupportedMediaType(InvalidInput):
    """The body comes in a media type the operation does not read."""

    code = "unsupported_media_type"


class NotFound(FlipMatchError):
    code = "not_found"


class Conflict(FlipMatchError):
    code = "conflict"


class Unauthorized(FlipMatchError):
    """No credentials, or credentials that match no key."""

    code = "invalid_api_key"


class Forbidden(FlipMatchError):
    """Valid credentials without the needed scope, or writes disabled by configuration."""

    code = "forbidden"


class Overloaded(FlipMatchError):
    """The embedding queue is full; the client should retry after `retry_after_s`."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReady(FlipMatchError):
    """The service (or one corpus) is loading, re-embedding or shutting down."""

    code = "not_ready"

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreUnavailable(NotReady):
    """The shared corpus database cannot be reached: writes fail fast (searches keep serving from memory)."""

    code = "store_unavailable"


class ClientDisconnected(FlipMatchError):
    """The client went away before its answer was ready; its queued work was dropped. Nobody reads the reply."""

    code = "client_closed_request"


class EncoderFailed(FlipMatchError):
    """The forward pass failed for a batch. Only that batch's requests see it."""

    code = "encoder_failed"


class ArtifactError(FlipMatchError):
    """The model artifact cannot be loaded or fails its parity check. Raised at start-up only."""

    code = "artifact_error"


class ConfigError(FlipMatchError):
    """Settings that are individually valid but do not fit the loaded model. Raised at start-up only."""

    code = "config_error"
