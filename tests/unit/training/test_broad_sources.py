"""The broad distillation pool: every new source keeps its evaluation texts (and MedQuAD its evaluation foci)
out of training, the unlabelled pool carries no gold label, and data.mix draws sources by weight."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.fixtures.tiny_broad_data import build_broad_data
from tests.fixtures.tiny_models import build_tiny_data
from training.config import DataConfig
from training.data.batches import label_matrix
from training.data.broad import bank_faq_hdfc, medquad_qa, stsbenchmark
from training.data.medquad import focus_key, load_medquad
from training.data.mix import MixedSampler, make_sampler
from training.data.pairs import UNLABELLED, TaskData
from training.data.sources import load_task_data, medical_rqe
from training.quality.tasks import TaskLimits, build_tasks

LIMITS = TaskLimits(test_queries_per_intent=2, pairs_per_set=10, holdout_every=2, medquad_foci=2)


@pytest.fixture(scope="module")
def broad_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("broad")
    build_tiny_data(root)
    return build_broad_data(root)


def _cfg(root, **kw) -> DataConfig:
    return DataConfig(data_dir=str(root), dev_queries_per_intent=2, faq_alternates_per_intent=2,
                      medquad_eval_foci=4, **kw)


def _embed(texts):
    vecs = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=8) for t in texts]).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def _train_texts(data: TaskData) -> set[str]:
    return {t for unit in data.train for p in unit for t in (p.text_a, p.text_b)}


def _eval_texts(sets) -> set[str]:
    out: set[str] = set()
    for s in sets:
        if hasattr(s, "pairs"):
            out |= {t for p in s.pairs for t in (p.text_a, p.text_b)}
        else:
            out |= set(s.queries) | set(s.corpus_texts)
    return out


def test_medquad_qa_never_trains_on_an_evaluation_focus_or_text(broad_dir):
    cfg = _cfg(broad_dir)
    data = medquad_qa(cfg, _embed)
    tasks = build_tasks(cfg, LIMITS, ["medquad"])  # the quality benchmark's MedQuAD sets
    reserved = set(load_medquad(cfg).reserved)
    assert len(reserved) == 4 and data.train
    trained_foci = {p.group_a.removeprefix("medquad:").split("|")[0] for unit in data.train for p in unit}
    assert not trained_foci & reserved
    eval_foci = {focus_key(q.split(" of ")[1].removesuffix(" ?")) for q in tasks.dev[0].queries + tasks.test[0].queries}
    assert eval_foci <= reserved  # the benchmark draws only from the reserve
    banned = _eval_texts(tasks.dev + tasks.test + data.dev + data.test)
    assert not _train_texts(data) & banned
    # the alias trap: a reserved focus' questions under another focus name are dropped too
    assert not any("(alias)" in p.group_a and p.text_a in banned for unit in data.train for p in unit)
    assert "What is Solo ?" in {p.text_a for unit in data.train for p in unit}  # single-qtype foci train


def test_medquad_qa_pairs_a_question_with_its_answer_and_a_sibling_qtype_negative(broad_dir):
    data = medquad_qa(_cfg(broad_dir), _embed)
    units = [u for u in data.train if len(u) == 2]
    assert units
    for pos, neg in units:
        assert pos.label == 1 and neg.label == 0 and pos.text_a == neg.text_a
        focus_pos, _, qtype_pos = pos.group_b.partition("|")
        focus_neg, _, qtype_neg = neg.group_b.partition("|")
        assert focus_pos == focus_neg and qtype_pos != qtype_neg


def test_medquad_evaluation_refuses_a_reserve_too_small(broad_dir):
    with pytest.raises(ValueError, match="data.medquad_eval_foci"):
        build_tasks(_cfg(broad_dir), TaskLimits(medquad_foci=3), ["medquad"])


def test_rqe_train_holds_no_validation_text_and_no_trivial_pair(broad_dir):
    data = medical_rqe(_cfg(broad_dir), _embed)
    tasks = build_tasks(_cfg(broad_dir), LIMITS, ["rqe"])
    assert data.train and not _train_texts(data) & _eval_texts(tasks.dev + tasks.test + data.dev + data.test)
    assert all(p.text_a != p.text_b for unit in data.train for p in unit)


def test_rqe_dev_and_test_are_label_stratified_halves_of_validation(broad_dir):
    data = medical_rqe(_cfg(broad_dir, max_eval_pairs=10_000), _embed)
    (dev,), (test,) = data.dev, data.test
    share = [sum(p.label for p in s.pairs) / len(s.pairs) for s in (dev, test)]
    assert 0 < share[0] < 1 and abs(share[0] - share[1]) <= 1 / len(dev.pairs) + 1 / len(test.pairs)
    assert abs(len(dev.pairs) - len(test.pairs)) <= 2
    assert not {(p.text_a, p.text_b) for p in dev.pairs} & {(p.text_a, p.text_b) for p in test.pairs}


def test_hdfc_split_by_question_without_leakage(broad_dir):
    data = bank_faq_hdfc(_cfg(broad_dir), _embed)
    assert data.train and data.dev[0].queries and data.test[0].queries
    banned = _eval_texts(data.dev + data.test)
    assert not _train_texts(data) & banned
    # case/space duplicates are one question: its other spelling is not a training text either
    eval_questions = {" ".join(q.lower().split()) for q in data.dev[0].queries + data.test[0].queries}
    assert not {" ".join(p.text_a.lower().split()) for unit in data.train for p in unit} & eval_questions
    assert {p.label for unit in data.train for p in unit} == {0, 1}


def test_stsb_binarised_without_dev_or_test_sentences(broad_dir):
    data = stsbenchmark(_cfg(broad_dir), _embed)
    assert data.train and not _train_texts(data) & _eval_texts(data.dev + data.test)
    assert "a fresh sentence" not in _train_texts(data)  # its pair shares a dev sentence
    assert {p.label for unit in data.train for p in unit} == {0, 1}


def test_unlabelled_pool_is_training_text_only_and_carries_no_gold(broad_dir):
    cfg = _cfg(broad_dir, sources=["medical_rqe", "unlabelled"], unlabelled_from=["medical_rqe", "medquad_qa"])
    data = load_task_data(cfg, _embed)
    assert len(data.origin) == len(data.train)
    pool = [u for u, o in zip(data.train, data.origin, strict=True) if o == "unlabelled"]
    assert pool and all(len(u) == 1 and u[0].label == UNLABELLED and u[0].text_a != u[0].text_b for u in pool)
    allowed = _train_texts(medical_rqe(cfg, _embed)) | _train_texts(medquad_qa(cfg, _embed))
    assert {t for u in pool for t in (u[0].text_a, u[0].text_b)} <= allowed
    labels = label_matrix([pool[0][0], data.train[0][0]])
    assert labels.tolist() == [[UNLABELLED, UNLABELLED], [UNLABELLED, data.train[0][0].label]]


def test_unlabelled_pool_respects_its_own_anchor_cap(broad_dir):
    cfg = _cfg(broad_dir, sources=["medical_rqe", "unlabelled"], unlabelled_from=["medical_rqe", "medquad_qa"])
    full = load_task_data(cfg, _embed).origin.count("unlabelled")
    capped = _cfg(
        broad_dir,
        sources=["medical_rqe", "unlabelled"],
        unlabelled_from=["medical_rqe", "medquad_qa"],
        anchors_per_source={"unlabelled": 2},
    )
    assert full > 2 and load_task_data(capped, _embed).origin.count("unlabelled") == 2


def test_mix_draws_sources_by_weight_deterministically(broad_dir):
    cfg = _cfg(broad_dir, sources=["medical_rqe", "stsbenchmark"], mix={"medical_rqe": 3.0, "stsbenchmark": 1.0})
    data = load_task_data(cfg, _embed)
    sampler = make_sampler(data, cfg, batch_pairs=8, seed=5)
    assert isinstance(sampler, MixedSampler)
    assert sampler.batch(7) == make_sampler(data, cfg, batch_pairs=8, seed=5).batch(7)
    assert sampler.batch(7) != sampler.batch(8)
    rqe = set(_train_texts(medical_rqe(cfg, _embed)))
    counts = Counter("rqe" if p.text_a in rqe else "sts" for s in range(200) for p in sampler.batch(s))
    assert 0.65 < counts["rqe"] / sum(counts.values()) < 0.85  # 3:1 over 1,600 draws
    assert all(len(sampler.batch(s)) == 8 for s in range(5))


@pytest.mark.parametrize(
    ("mix", "message"),
    [({"medical_rqe": 1.0}, "missing \\['stsbenchmark'\\]"), ({"medical_rqe": 1.0, "stsbenchmark": 0.0}, "> 0")],
)
def test_mix_must_weigh_every_source(broad_dir, mix, message):
    with pytest.raises(ValueError, match=message):
        load_task_data(_cfg(broad_dir, sources=["medical_rqe", "stsbenchmark"], mix=mix), _embed)


def test_anchors_per_source_caps_only_the_named_source(broad_dir):
    full = load_task_data(_cfg(broad_dir, sources=["medical_rqe", "stsbenchmark"]), _embed)
    capped = load_task_data(
        _cfg(broad_dir, sources=["medical_rqe", "stsbenchmark"], anchors_per_source={"medical_rqe": 3}), _embed
    )
    assert Counter(capped.origin)["medical_rqe"] == 3 < Counter(full.origin)["medical_rqe"]
    assert Counter(capped.origin)["stsbenchmark"] == Counter(full.origin)["stsbenchmark"]
    assert [s.name for s in capped.dev] == [s.name for s in full.dev]  # the cap never moves an evaluation split


@pytest.mark.parametrize(("caps", "message"), [({"banking77": 5}, "not used"), ({"medical_rqe": 0}, ">= 1")])
def test_anchors_per_source_rejects_unknown_or_empty_caps(broad_dir, caps, message):
    with pytest.raises(ValueError, match=message):
        load_task_data(_cfg(broad_dir, sources=["medical_rqe"], anchors_per_source=caps), _embed)


def test_stsb_agreement_set_is_test_pairs_only_and_says_whether_it_was_trained_on(broad_dir):
    cfg = _cfg(broad_dir, sources=["medical_rqe"], mix={})
    tasks = build_tasks(cfg, LIMITS, ["stsb"])
    assert not tasks.dev and not tasks.test  # agreement only: no metric, no threshold
    (pairs,) = tasks.agreement
    assert pairs.name == "stsb" and pairs.pairs == stsbenchmark(cfg, _embed).test[0].pairs[: LIMITS.pairs_per_set]
    assert tasks.splits["stsb"]["trained_on"] is False
    assert build_tasks(_cfg(broad_dir, sources=["stsbenchmark"]), LIMITS, ["stsb"]).splits["stsb"]["trained_on"]
