"""python -m service: build settings from FLIPMATCH_* environment variables, set up logging, run uvicorn."""

from __future__ import annotations

from service.server import serve

if __name__ == "__main__":
    serve()
