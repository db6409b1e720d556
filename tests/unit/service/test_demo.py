"""Demo corpus builders on small synthetic files, and on the bundled data when it is present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.demo import banking77_entries, medquad_entries

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


def write_data(root: Path) -> Path:
    (root / "banking77").mkdir(parents=True)
    rows = ["text,category"] + [f"card question {i}?,card_arrival" for i in range(5)] + [
        '"Why, exactly, was I charged?",extra_charge_on_statement', "card question 0?,card_arrival"]
    (root / "banking77" / "train.csv").write_text("\n".join(rows) + "\n")
    (root / "medquad").mkdir()
    records = [{"id": f"{src}_{i}", "source": src, "question": f"What is {src} {i} ?", "answer": f"A{i}",
                "focus": "x", "qtype": "information"} for src in ("GHR", "CDC") for i in range(3)]
    records.append({"id": "dup", "source": "GHR", "question": "What is GHR 0 ?", "answer": "again"})
    records.append({"id": "empty", "source": "CDC", "question": "No answer?", "answer": ""})
    (root / "medquad" / "medquad.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return root


def test_banking77_one_entry_per_intent(tmp_path):
    entries = {e.id: e for e in banking77_entries(write_data(tmp_path), max_alternates=2)}
    assert set(entries) == {"card_arrival", "extra_charge_on_statement"}
    card = entries["card_arrival"]
    assert card.question == "card question 0?"
    assert card.alt_questions == ("card question 1?", "card question 2?")  # capped, duplicates dropped
    assert "card arrival" in card.answer and card.metadata["intent"] == "card_arrival"
    assert entries["extra_charge_on_statement"].question == "Why, exactly, was I charged?"


def test_medquad_caps_dedupes_and_spreads_across_sources(tmp_path):
    entries = medquad_entries(write_data(tmp_path), max_entries=4)
    assert [e.id for e in entries] == ["CDC_0", "GHR_0", "CDC_1", "GHR_1"]
    everything = medquad_entries(tmp_path, max_entries=100)
    assert {e.id for e in everything} == {f"{s}_{i}" for s in ("GHR", "CDC") for i in range(3)}


@pytest.mark.skipif(not (SHARED_DATA / "banking77" / "train.csv").exists(), reason="bundled data not present")
def test_bundled_data():
    banking = banking77_entries(SHARED_DATA, max_alternates=20)
    assert len(banking) == 77 and all(len(e.alt_questions) == 20 for e in banking)
    medquad = medquad_entries(SHARED_DATA, max_entries=2000)
    assert len(medquad) == 2000 and len({e.metadata["source"] for e in medquad}) == 9
