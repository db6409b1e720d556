"""Run the service: logging set-up and one uvicorn worker. `serve(settings)` is the entry point for
`python -m service` and for the `flipmatch serve` CLI."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import FrameType

import uvicorn

from service.settings import ServiceSettings

LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app the moment SIGTERM/SIGINT arrives, so /health/ready turns 503 while
    in-flight requests drain (load balancers stop routing before the port closes)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


def serve(settings: ServiceSettings | None = None) -> None:
    """Build the app from `settings` (default: from FLIPMATCH_* environment variables) and serve it with one
    uvicorn worker until SIGINT/SIGTERM. The model, the batcher and corpora live in this one process."""
    from service.app import create_app

    settings = settings if settings is not None else ServiceSettings()
    configure_logging(settings.log_level)
    logging.getLogger(__name__).info(
        "starting model_path=%s data_dir=%s host=%s port=%d device=%s dtype=%s",
        settings.model_path, settings.data_dir, settings.host, settings.port, settings.device, settings.dtype,
    )
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, workers=1, log_config=None,
                            log_level=settings.log_level, timeout_graceful_shutdown=30)

    def draining() -> None:
        app.state.flipmatch.readiness.shutting_down = True

    _Server(config, on_exit=draining).run()
