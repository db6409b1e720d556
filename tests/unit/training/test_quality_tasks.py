"""Benchmark evaluation sets: fixed, recorded splits without leakage (tiny on-disk data, no models)."""

from __future__ import annotations

import json

import numpy as np

from tests.fixtures.tiny_broad_data import medquad_rows
from training.config import DataConfig
from training.data.sources import banking77
from training.evaluate.evaluators import NoMatchSet
from training.quality.tasks import TaskLimits, build_tasks, medquad_tasks

LIMITS = TaskLimits(test_queries_per_intent=2, pairs_per_set=10, holdout_every=2, medquad_foci=2)


def _cfg(data_dir) -> DataConfig:
    return DataConfig(data_dir=str(data_dir), dev_queries_per_intent=2, faq_alternates_per_intent=2)


def test_banking77_holds_intents_out_of_the_corpus(tiny_data_dir):
    cfg = _cfg(tiny_data_dir)
    tasks = build_tasks(cfg, LIMITS, ["banking77"])
    held = tasks.splits["banking77"]["held_out_intents"]
    assert held == ["exchange_rate", "top_up"]  # every 2nd of the 4 sorted intents
    for split in (tasks.dev, tasks.test):
        faq, nomatch, pairs = split
        assert not set(held) & set(faq.corpus_labels) and not set(held) & set(faq.query_labels)
        assert isinstance(nomatch, NoMatchSet) and nomatch.queries_out and nomatch.queries_in
        assert {p.label for p in pairs.pairs} == {0, 1}
    # same split as the training source: no dev query or corpus text is a training anchor or positive
    train = banking77(cfg, lambda texts: np.eye(len(texts), 8))
    train_texts = {t for unit in train.train for p in unit for t in (p.text_a, p.text_b) if p.label == 1}
    assert not train_texts & (set(tasks.dev[0].queries) | set(tasks.dev[0].corpus_texts))
    assert tasks.agreement == [tasks.test[2]]


def test_build_is_deterministic(tiny_data_dir):
    a = build_tasks(_cfg(tiny_data_dir), LIMITS, ["banking77", "mqp"])
    b = build_tasks(_cfg(tiny_data_dir), LIMITS, ["banking77", "mqp"])
    assert a.splits == b.splits and a.test == b.test


def test_medquad_queries_never_in_corpus_and_foci_disjoint(tmp_path):
    rows = medquad_rows(6)
    rows.append({**rows[0], "id": "dup"})  # a second row of a (focus, qtype) group is not a new entry
    (tmp_path / "medquad").mkdir()
    (tmp_path / "medquad" / "medquad.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    tasks = medquad_tasks(DataConfig(data_dir=str(tmp_path)), LIMITS)
    dev, test = tasks.dev[0], tasks.test[0]
    assert len(dev.corpus_texts) == len(test.corpus_texts) == 6  # 2 foci x 3 qtypes
    assert all(len(t) <= LIMITS.answer_chars for t in dev.corpus_texts)
    assert not set(dev.queries) & set(dev.corpus_texts)
    assert not {q.split(" of ")[1] for q in dev.queries} & {q.split(" of ")[1] for q in test.queries}
    assert sorted(dev.query_labels) == sorted(set(dev.corpus_labels))
    assert tasks.splits["medquad_test"]["entries"] == 6
