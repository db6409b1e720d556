"""Pair and evaluation-set types, and the readers for users' CSV/JSONL pair files.

Column names appear only here. A malformed row fails the whole load with a message naming the row.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

UNLABELLED = -1


@dataclass(frozen=True)
class Pair:
    """A labelled text pair. `group_*` name the meaning a text belongs to (an intent, a question id):
    two texts of one group are positives for each other anywhere in a batch; None means "only itself"."""

    text_a: str
    text_b: str
    label: int  # 1 = same meaning, 0 = different, UNLABELLED (-1) = no gold label (teacher signal only)
    group_a: str | None = None
    group_b: str | None = None


@dataclass(frozen=True)
class PairSet:
    """Pair matching evaluation: F1 at the best threshold, AP, ROC-AUC."""

    name: str
    pairs: list[Pair]


@dataclass(frozen=True)
class RetrievalSet:
    """Query -> FAQ retrieval: each corpus text (a question or an alternate) maps to an entry label."""

    name: str
    corpus_texts: list[str]
    corpus_labels: list[str]
    queries: list[str]
    query_labels: list[str]


@dataclass
class TaskData:
    # Training units: pairs sharing an anchor (its positive and its hard negative) stay in one batch.
    train: list[tuple[Pair, ...]] = field(default_factory=list)
    dev: list[PairSet | RetrievalSet] = field(default_factory=list)
    test: list[PairSet | RetrievalSet] = field(default_factory=list)
    origin: list[str] = field(default_factory=list)  # source name per training unit (load_task_data fills it)

    def extend(self, other: TaskData) -> None:
        self.train.extend(other.train)
        self.dev.extend(other.dev)
        self.test.extend(other.test)


def eval_texts(sets: list) -> list[str]:
    """Every text an evaluation over `sets` embeds."""
    texts: list[str] = []
    for data in sets:
        if hasattr(data, "pairs"):
            texts += [t for p in data.pairs for t in (p.text_a, p.text_b)]
        else:
            queries = getattr(data, "queries", None) or [*data.queries_in, *data.queries_out]
            texts += [*data.corpus_texts, *queries]
    return list(dict.fromkeys(texts))


def _parse_label(value: object, where: str) -> int:
    text = str(value).strip().lower()
    if text in {"1", "1.0", "true", "yes", "pos", "positive"}:
        return 1
    if text in {"0", "0.0", "false", "no", "neg", "negative"}:
        return 0
    raise ValueError(f"{where}: label {value!r} is not a binary label (use 1/0, true/false, yes/no)")


def _row_to_pair(row: dict[str, object], columns: dict[str, str], where: str) -> Pair:
    missing = [columns[k] for k in ("text_a", "text_b", "label") if columns[k] not in row]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; found {sorted(row)} (set data.file_columns)")
    text_a, text_b = row[columns["text_a"]], row[columns["text_b"]]
    for name, value in (("text_a", text_a), ("text_b", text_b)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: column {columns[name]!r} must be a non-empty string, got {value!r}")
    return Pair(str(text_a).strip(), str(text_b).strip(), _parse_label(row[columns["label"]], where))


def read_pairs(path: str | Path, columns: dict[str, str] | None = None) -> list[Pair]:
    """Read a user's pair file (.csv with a header row, or .jsonl) with configurable column names."""
    columns = {"text_a": "text_a", "text_b": "text_b", "label": "label", **(columns or {})}
    path = Path(path)
    if not path.exists():
        raise ValueError(f"pair file {path} does not exist")
    pairs: list[Pair] = []
    if path.suffix.lower() in {".jsonl", ".json"}:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{where}: not valid JSON ({err.msg})") from err
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: each line must be a JSON object")
                pairs.append(_row_to_pair(row, columns, where))
    elif path.suffix.lower() in {".csv", ".tsv"}:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with path.open(encoding="utf-8", newline="") as fh:
            for number, row in enumerate(csv.DictReader(fh, delimiter=delimiter), start=2):
                pairs.append(_row_to_pair(dict(row), columns, f"{path}:{number}"))
    else:
        raise ValueError(f"{path}: unsupported pair file type {path.suffix!r}; use .csv, .tsv or .jsonl")
    if not pairs:
        raise ValueError(f"{path}: no pairs found")
    return pairs
