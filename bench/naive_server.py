"""Baseline (a): the naive service, one `SentenceTransformer.encode` call per request, no batching.

    .venv/bin/python -m bench.naive_server --model artifacts/flipmatch-default --port 8101
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer


class EmbeddingRequest(BaseModel):
    input: str | list[str]


def create_app(model_path: str) -> FastAPI:
    model = SentenceTransformer(model_path, device="cpu")
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    def embeddings(request: EmbeddingRequest) -> dict[str, object]:  # sync route: runs in the threadpool
        texts = [request.input] if isinstance(request.input, str) else request.input
        vectors = model.encode(texts)
        return {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                                           for i, v in enumerate(vectors)]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8101)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
