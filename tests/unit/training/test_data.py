from __future__ import annotations

import json

import pytest

from training.config import DataConfig
from training.data.batches import UnitSampler, label_matrix
from training.data.pairs import Pair, PairSet, RetrievalSet, eval_texts, read_pairs
from training.data.sources import eval_free, load_task_data


def test_read_pairs_csv_with_custom_columns(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("q1,q2,same\nhow are you,how do you do,yes\nhi,bye,0\n")
    pairs = read_pairs(path, {"text_a": "q1", "text_b": "q2", "label": "same"})
    assert pairs == [Pair("how are you", "how do you do", 1), Pair("hi", "bye", 0)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text_a": "x", "text_b": "y", "label": 3}', "pairs.jsonl:2: label 3"),
        ('{"text_a": "", "text_b": "y", "label": 1}', "pairs.jsonl:2: column 'text_a' must be a non-empty"),
        ('{"text_a": "x", "label": 1}', "pairs.jsonl:2: missing column(s) ['text_b']"),
        ("not json", "pairs.jsonl:2: not valid JSON"),
    ],
)
def test_read_pairs_rejects_malformed_row_naming_it(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"text_a": "a", "text_b": "b", "label": 1}) + "\n" + line + "\n")
    with pytest.raises(ValueError) as err:
        read_pairs(path)
    assert message in str(err.value)


def test_label_matrix_groups_and_gold_diagonal():
    pairs = [
        Pair("where is my card", "card not here", 1, "arrival", "arrival"),
        Pair("where is my card", "lost my card", 0, "arrival", "lost"),
        Pair("top up failed", "cannot add money", 1, "top_up", "top_up"),
    ]
    labels = label_matrix(pairs)
    assert labels.tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 1]]


def test_unit_sampler_is_deterministic_and_ranks_disjoint():
    units = [(Pair(f"a{i}", f"b{i}", 1),) for i in range(40)]
    s0, s1 = UnitSampler(units, 4, seed=1, rank=0, world=2), UnitSampler(units, 4, seed=1, rank=1, world=2)
    assert s0.batch(3) == UnitSampler(units, 4, seed=1, rank=0, world=2).batch(3)
    assert not {p.text_a for p in s0.batch(2)} & {p.text_a for p in s1.batch(2)}
    assert len(s0.batch(0)) == 4


def test_sources_build_splits_without_leakage(tiny_data_dir):
    import numpy as np

    def fake_embed(texts):
        rng = np.random.default_rng(len(texts))
        v = rng.normal(size=(len(texts), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    cfg = DataConfig(data_dir=str(tiny_data_dir), dev_queries_per_intent=2, faq_alternates_per_intent=2)
    data = load_task_data(cfg, fake_embed)
    banking_dev = data.dev[0]
    train_texts = {p.text_a for unit in data.train for p in unit} | {p.text_b for unit in data.train for p in unit}
    assert not set(banking_dev.queries) & train_texts
    assert not set(banking_dev.queries) & set(banking_dev.corpus_texts)
    # No dev or test text of any source reaches training, even where the dataset repeats a text across its own
    # splits (the tiny Banking77 test split repeats train questions word for word, as the real one does 6 times).
    assert {d.name for d in data.test} == {"banking77", "mqp"}
    folded = {" ".join(t.lower().split()) for t in train_texts}
    for evaluation in [*data.dev, *data.test]:
        assert not {" ".join(t.lower().split()) for t in eval_texts([evaluation])} & folded, evaluation.name
    for unit in data.train:
        assert unit[0].text_a == unit[-1].text_a  # an anchor's pairs stay together
    assert {d.name for d in data.dev} == {"banking77", "mqp"}


def test_units_sharing_a_text_with_an_evaluation_are_dropped_whole():
    units = [(Pair("keep me", "fine", 1), Pair("keep me", "other", 0)),
             (Pair("anchor", "Where  is my CARD", 1), Pair("anchor", "unrelated", 0)),
             (Pair("dose of drug 3", "x", 0),)]
    sets = [RetrievalSet("b", ["faq"], ["l"], ["where is my card"], ["l"]),
            PairSet("m", [Pair("dose of drug 3", "y", 0)])]
    assert eval_free(units, sets) == [True, False, False]


def test_unknown_source_and_missing_data_fail_fast(tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        load_task_data(DataConfig(sources=["nope"]), lambda t: None)
    with pytest.raises(ValueError, match="FLIPMATCH_DATASETS_DIR"):
        load_task_data(DataConfig(data_dir=str(tmp_path), sources=["banking77"]), lambda t: None)


def test_excluded_intents_leave_training_but_not_the_eval_splits(tiny_data_dir):
    import numpy as np

    def fake_embed(texts):
        v = np.random.default_rng(len(texts)).normal(size=(len(texts), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    cfg = DataConfig(data_dir=str(tiny_data_dir), sources=["banking77"], dev_queries_per_intent=2)
    full = load_task_data(cfg, fake_embed)
    intents = {p.group_a for unit in full.train for p in unit}
    gone = sorted(intents)[0]
    cut = load_task_data(cfg.model_copy(update={"exclude_intents": [gone]}), fake_embed)
    pairs = [p for unit in cut.train for p in unit]
    assert pairs and not {gone} & ({p.group_a for p in pairs} | {p.group_b for p in pairs})
    # dev queries and the FAQ corpus are the same split with or without the exclusion
    assert cut.dev[0].queries == full.dev[0].queries and cut.dev[0].corpus_texts == full.dev[0].corpus_texts
    with pytest.raises(ValueError, match="not Banking77 intents"):
        load_task_data(cfg.model_copy(update={"exclude_intents": ["no_such_intent"]}), fake_embed)


def test_order_seed_changes_the_batch_order_only():
    units = [(Pair(f"a{i}", f"b{i}", 1),) for i in range(40)]
    same = UnitSampler(units, 4, seed=13).batch(0), UnitSampler(units, 4, seed=13).batch(0)
    other = UnitSampler(units, 4, seed=43).batch(0)
    assert same[0] == same[1] and other != same[0]


def test_the_demo_corpus_questions_never_reach_training(tiny_data_dir):
    """The service's demo corpus is the first question + alternates per intent of Banking77 train; with
    data.reserved_per_intent covering them, no demo text is a training, dev or FAQ text, so self-calibrating the
    demo corpus measures the student on questions it has not seen."""
    import numpy as np

    from service.demo import banking77_entries

    def fake_embed(texts):
        v = np.random.default_rng(len(texts)).normal(size=(len(texts), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    cfg = DataConfig(data_dir=str(tiny_data_dir), sources=["banking77"], dev_queries_per_intent=2,
                     faq_alternates_per_intent=2, reserved_per_intent=6)
    data = load_task_data(cfg, fake_embed)
    demo = {t for e in banking77_entries(tiny_data_dir, max_alternates=5) for t in (e.question, *e.alt_questions)}
    trained = {t for unit in data.train for p in unit for t in (p.text_a, p.text_b)}
    assert len(demo) == 4 * 6 and trained and not demo & trained
    assert not demo & set(eval_texts(data.dev))
    unreserved = load_task_data(cfg.model_copy(update={"reserved_per_intent": 0}), fake_embed)
    assert demo & {t for unit in unreserved.train for p in unit for t in (p.text_a, p.text_b)}
