"""Run the service: logging set-up and one uvicorn worker. `serve(settings)` is the entry point for
`python -m service` and for the `flipmatch serve` CLI."""

from __future__ import annotations

import logging

import uvicorn

from service.settings import ServiceSettings

LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, workers=1, log_config=None,
                log_level=settings.log_level, timeout_graceful_shutdown=30)
