from __future__ import annotations

import pytest

from tests.fixtures.tiny_models import build_tiny_student


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory):
    return build_tiny_student(tmp_path_factory.mktemp("tiny_student"))


@pytest.fixture(scope="module")
def live_service(tiny_artifact, tmp_path_factory):
    """The real service (`python -m service`) on 127.0.0.1 with the tiny artifact, an admin key and no demo
    corpora; yields its base URL."""
    from tests.hardening.live_server import LiveServer

    root = tmp_path_factory.mktemp("live_service")
    server = LiveServer(tiny_artifact, root / "data", root / "server.log", FLIPMATCH_DEMO__PRELOAD="false")
    try:
        yield server.start(timeout=300)
    finally:
        server.stop()
