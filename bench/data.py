"""Real FAQ-length queries for the benchmarks: Banking77 test questions (configurable data dir), and a Zipf
replay of them (chatbot traffic repeats its popular questions)."""

from __future__ import annotations

import csv
import random
from pathlib import Path


def load_queries(data_dir: Path, *, dataset: str = "banking77", split: str = "test.csv") -> list[str]:
    path = data_dir / dataset / split
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; pass --data-dir pointing at the folder holding {dataset}/")
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle) if row.get("text")]


def zipf_stream(queries: list[str], count: int, *, exponent: float = 1.0, seed: int = 0) -> list[str]:
    """`count` draws where the k-th query (in the given order) has probability proportional to 1 / k^exponent."""
    if not queries:
        raise ValueError("no queries to replay")
    weights = [1.0 / (k ** exponent) for k in range(1, len(queries) + 1)]
    return random.Random(seed).choices(queries, weights=weights, k=count)
