"""API test fixtures: the app on the tiny artifact behind a ready TestClient, and an encoder whose forward pass
can be held (api_helpers.HeldEncoder)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_helpers import HeldEncoder
from fastapi.testclient import TestClient

from service.app import create_app


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/health/ready")
        if response.status_code == 200:
            return
        assert time.monotonic() < deadline, f"not ready within {timeout}s: {response.text}"
        time.sleep(0.02)


@pytest.fixture
def api(make_settings: Callable[..., Any]) -> Callable[..., contextlib.AbstractContextManager[TestClient]]:
    """api(encoder=None, **settings_overrides) -> context manager yielding a ready TestClient."""

    @contextlib.contextmanager
    def start(encoder: Any = None, **overrides: Any) -> Iterator[TestClient]:
        app = create_app(make_settings(**overrides), encoder=encoder)
        with TestClient(app, raise_server_exceptions=False) as client:
            wait_ready(client)
            yield client

    return start


@pytest.fixture
def client(api: Callable[..., contextlib.AbstractContextManager[TestClient]]) -> Iterator[TestClient]:
    with api() as c:
        yield c


@pytest.fixture(scope="session")
def tiny_encoder(tiny_artifact: Any) -> Any:
    from service.engine.encoder import load_encoder

    return load_encoder(str(tiny_artifact), device="cpu", dtype="float32")


@pytest.fixture
def held_encoder(tiny_encoder: Any) -> Iterator[HeldEncoder]:
    encoder = HeldEncoder(tiny_encoder)
    yield encoder
    encoder.release()
