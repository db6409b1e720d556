"""Run the service: logging set-up and one uvicorn worker. `serve(settings)` is the entry point for
`python -m service` and for the `flipmatch serve` CLI."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from pydantic import ValidationError

from service.settings import ServiceSettings

LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app the moment SIGTERM/SIGINT arrives, so /health/ready turns 503 while
    in-flight requests drain (load balancers stop routing before the port closes).

    uvicorn alone stops listening on its next 0.1 s tick, so a probe would see "connection refused" rather than
    503 and new requests would be refused at TCP level. Instead the port stays open (readiness 503, new API calls
    503) until the requests in flight at the signal have finished, at most `drain_s`; a second SIGINT forces exit.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None], *, drain_s: float = 30.0) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._drain_s = drain_s
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        if self._drain_until is None:
            self._drain_until = time.monotonic() + self._drain_s
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        exit_now = await super().on_tick(counter)
        if exit_now and not self.force_exit and self._drain_until is not None:
            in_flight = any(not task.done() for task in self.server_state.tasks)
            if in_flight and time.monotonic() < self._drain_until:
                return False  # keep listening while requests in flight finish
        return exit_now


def serve(settings: ServiceSettings | None = None) -> None:
    """Build the app from `settings` (default: from FLIPMATCH_* environment variables) and serve it with one
    uvicorn worker until SIGINT/SIGTERM. The model, the batcher and corpora live in this one process."""
    from service.app import create_app

    if settings is None:
        try:
            settings = ServiceSettings()
        except ValidationError as err:
            # pydantic's own message repeats the raw input values, API keys included: name each problem only.
            problems = "\n".join(f"  {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                                 for e in err.errors(include_url=False, include_input=False))
            raise SystemExit(f"invalid FLIPMATCH_* settings:\n{problems}") from None
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
