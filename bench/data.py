"""Real FAQ-length queries for the benchmarks: Banking77 test questions (configurable data dir)."""

from __future__ import annotations

import csv
from pathlib import Path


def load_queries(data_dir: Path, *, dataset: str = "banking77", split: str = "test.csv") -> list[str]:
    path = data_dir / dataset / split
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; pass --data-dir pointing at the folder holding {dataset}/")
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle) if row.get("text")]
