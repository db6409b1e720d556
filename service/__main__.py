"""python -m service: build settings from FLIPMATCH_* environment variables, set up logging, run uvicorn."""

from __future__ import annotations

import os

# Each request tokenizes a few short texts: the tokenizers crate's own thread pool only competes with the
# forward pass and the event loop for the cores. Set before transformers loads; an explicit value wins.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from service.server import serve  # noqa: E402 - after the environment default above

if __name__ == "__main__":
    serve()
