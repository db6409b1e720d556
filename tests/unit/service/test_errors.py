"""The error table: each domain error has its status and OpenAI-style type; subclasses follow their base."""

from __future__ import annotations

import pytest

from service.api.errors import ERROR_TABLE, status_for
from service.errors import (
    ArtifactError,
    ClientDisconnected,
    Conflict,
    EncoderFailed,
    FlipMatchError,
    Forbidden,
    InvalidInput,
    NotFound,
    NotReady,
    Overloaded,
    Unauthorized,
)


@pytest.mark.parametrize(("error", "status"), [
    (InvalidInput("x"), 422), (NotFound("x"), 404), (Conflict("x"), 409), (Unauthorized("x"), 401),
    (Forbidden("x"), 403), (Overloaded("x"), 429), (NotReady("x"), 503), (EncoderFailed("x"), 500),
    (ArtifactError("x"), 500), (ClientDisconnected("x"), 499),
])
def test_status(error, status):
    assert status_for(error)[0] == status


def test_subclasses_and_unknown_errors():
    class CorpusMissing(NotFound):
        pass

    assert status_for(CorpusMissing("x")) == (404, "not_found_error")
    assert status_for(FlipMatchError("x")) == (500, "server_error")


def test_every_domain_error_is_in_the_table():
    import service.errors as errors

    domain = {obj for obj in vars(errors).values()
              if isinstance(obj, type) and issubclass(obj, FlipMatchError) and obj is not FlipMatchError}
    assert domain <= set(ERROR_TABLE)


def test_codes_are_overridable():
    assert InvalidInput("x", code="too_many_inputs").code == "too_many_inputs"
    assert InvalidInput("x").code == "invalid_input"
