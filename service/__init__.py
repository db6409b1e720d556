"""FlipMatch service: the online half. Loads the encoder artifact and serves embeddings, pair matching and FAQ
search over named corpora. Entry point: `service.serve(settings)`; settings: `service.settings.ServiceSettings`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.settings import ServiceSettings

__all__ = ["serve"]


def serve(settings: ServiceSettings | None = None) -> None:
    """Run the service (see `service.server.serve`). Imported lazily so `import service` stays light."""
    from service.server import serve as _serve

    _serve(settings)
