"""Bulk import/export formats for FAQ entries: JSONL and CSV. Parsing only; field validation is the caller's.

JSONL: one object per line: {"id", "question", "alt_questions": [...], "answer", "metadata": {...}}.
CSV: a header row with `question` (required), `id`, `answer`, `alt_questions` (a JSON array, or alternates
separated by "|"), `metadata` (a JSON object); any other column is copied into metadata.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from service.corpus.store import Entry
from service.errors import InvalidInput

FORMATS = ("jsonl", "csv")
# What the import body holds, for the OpenAPI document (JSON Schema can say "a string" but not what its rows mean).
CSV_HELP = ("CSV (UTF-8, RFC 4180 quoting): a header row with a `question` column and optionally `id`, `answer`, "
            "`alt_questions` (a JSON array, or alternates separated by |), `metadata` (a JSON object); any other "
            "column goes into metadata. Then one entry per row.")
JSONL_HELP = ('JSON Lines (UTF-8): one entry object per line, {"id", "question", "alt_questions": [...], "answer", '
              '"metadata": {...}}; blank lines are skipped.')
CSV_COLUMNS = ("id", "question", "alt_questions", "answer", "metadata")


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"the body is not UTF-8 (byte {err.start}); re-save the file as UTF-8",
                           code="invalid_encoding") from err


def read_jsonl(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line."""
    for number, line in enumerate(_text(data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise InvalidInput(f"line {number}: not valid JSON ({err.msg})", code="invalid_jsonl") from err
        if not isinstance(record, dict):
            raise InvalidInput(f"line {number}: expected a JSON object, got {type(record).__name__}",
                               code="invalid_jsonl")
        yield number, record


def _alternates(cell: str, number: int) -> list[Any]:
    cell = cell.strip()
    if not cell:
        return []
    if cell.startswith("["):
        try:
            value = json.loads(cell)
        except ValueError as err:
            raise InvalidInput(f"line {number}: alt_questions is not a JSON array ({err.msg})",
                               code="invalid_csv") from err
        return value if isinstance(value, list) else [value]
    return [part.strip() for part in cell.split("|") if part.strip()]


def read_csv(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each data row. Line numbers count the header as line 1."""
    reader = csv.DictReader(io.StringIO(_text(data), newline=""))
    if reader.fieldnames is None or "question" not in reader.fieldnames:
        raise InvalidInput("CSV needs a header row with at least a 'question' column "
                           f"(known columns: {', '.join(CSV_COLUMNS)})", code="invalid_csv")
    try:
        for row in reader:
            number = reader.line_num
            if None in row:
                raise InvalidInput(f"line {number}: more cells than header columns", code="invalid_csv")
            record: dict[str, Any] = {"question": row.get("question") or ""}
            metadata: dict[str, Any] = {}
            if row.get("metadata"):
                try:
                    metadata = json.loads(row["metadata"])
                except ValueError as err:
                    raise InvalidInput(f"line {number}: metadata is not a JSON object ({err.msg})",
                                       code="invalid_csv") from err
            for column, value in row.items():
                if column not in CSV_COLUMNS and value not in (None, ""):
                    metadata[column] = value
            if row.get("id"):
                record["id"] = row["id"]
            record["answer"] = row.get("answer") or ""
            record["alt_questions"] = _alternates(row.get("alt_questions") or "", number)
            record["metadata"] = metadata
            yield number, record
    except csv.Error as err:
        raise InvalidInput(f"line {reader.line_num}: {err}", code="invalid_csv") from err


def read(data: bytes, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    return read_csv(data) if fmt == "csv" else read_jsonl(data)


def _as_dict(entry: Entry) -> dict[str, Any]:
    return {"id": entry.id, "question": entry.question, "alt_questions": list(entry.alt_questions),
            "answer": entry.answer, "metadata": dict(entry.metadata)}


def write_jsonl(entries: Iterable[Entry]) -> Iterator[str]:
    for entry in entries:
        yield json.dumps(_as_dict(entry), ensure_ascii=False) + "\n"


def write_csv(entries: Iterable[Entry]) -> Iterator[str]:
    """Round-trips through read_csv: alternates and metadata are written as JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow([entry.id, entry.question, json.dumps(list(entry.alt_questions), ensure_ascii=False),
                         entry.answer, json.dumps(dict(entry.metadata), ensure_ascii=False)])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def write(entries: Iterable[Entry], fmt: str) -> Iterator[str]:
    return write_csv(entries) if fmt == "csv" else write_jsonl(entries)
