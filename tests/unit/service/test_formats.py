"""JSONL and CSV import/export: parsing, errors with line numbers, round trips."""

from __future__ import annotations

import pytest

from service.corpus import formats
from service.corpus.store import Entry
from service.errors import InvalidInput

ENTRIES = [Entry("a1", "Question, with comma?", ("alt | one", 'alt "two"'), "Answer\nwith newline", {"k": 1}),
           Entry("b2", "Plain?", (), "", {})]


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_round_trip(fmt):
    data = "".join(formats.write(ENTRIES, fmt)).encode()
    records = [record for _, record in formats.read(data, fmt)]
    assert [(r["id"], r["question"], list(r["alt_questions"]), r["answer"], r["metadata"]) for r in records] == [
        (e.id, e.question, list(e.alt_questions), e.answer, dict(e.metadata)) for e in ENTRIES]


def test_csv_accepts_pipe_separated_alternates_and_extra_columns():
    data = b"question,answer,alt_questions,category\nLost card?,Call us.,lost it | card gone,cards\n"
    ((line, record),) = list(formats.read_csv(data))
    assert line == 2
    assert record["alt_questions"] == ["lost it", "card gone"]
    assert record["metadata"] == {"category": "cards"}
    assert "id" not in record


@pytest.mark.parametrize(("fmt", "data", "message"), [
    ("jsonl", b'{"question": "ok"}\n{not json}\n', "line 2: not valid JSON"),
    ("jsonl", b'["a list"]\n', "line 1: expected a JSON object"),
    ("csv", b"id,answer\n1,x\n", "'question' column"),
    ("csv", b"question,metadata\nq,{bad\n", "line 2: metadata is not a JSON object"),
    ("csv", b"question,answer\nq,a,extra\n", "line 2: more cells"),
    ("jsonl", b"\xff\xfe", "not UTF-8"),
])
def test_malformed_input_names_the_line(fmt, data, message):
    with pytest.raises(InvalidInput, match=message):
        list(formats.read(data, fmt))


def test_blank_lines_are_skipped_and_bom_is_ignored():
    data = '\ufeff{"question": "a"}\n\n{"question": "b"}\n'.encode()
    assert [line for line, _ in formats.read_jsonl(data)] == [1, 3]


def test_empty_export_still_has_a_csv_header():
    assert "".join(formats.write_csv([])) == "id,question,alt_questions,answer,metadata\r\n"
