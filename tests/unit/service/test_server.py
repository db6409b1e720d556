"""service.serve wiring: a shutdown signal turns readiness off before uvicorn drains; the entry points exist."""

from __future__ import annotations

import signal

import uvicorn

import service
from service.app import create_app
from service.server import _Server


def test_a_shutdown_signal_marks_the_app_as_draining(make_settings):
    app = create_app(make_settings())
    readiness = app.state.flipmatch.readiness
    server = _Server(uvicorn.Config(app), on_exit=lambda: setattr(readiness, "shutting_down", True))
    server.handle_exit(signal.SIGTERM, None)
    assert readiness.shutting_down and server.should_exit
    assert readiness.reason() == "shutting down"


def test_public_entry_points():
    assert callable(service.serve)
    import importlib.util

    assert importlib.util.find_spec("service.__main__") is not None
