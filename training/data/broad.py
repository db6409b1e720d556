"""The broad distillation pool's labelled sources: MedQuAD question -> answer, the HDFC bank FAQ and STS-B.

Each returns TaskData like training/data/sources.py's adapters, and each removes from its training units
every text that one of its evaluation sets uses (tests/unit/training/test_broad_sources.py checks it).
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from pathlib import Path

from training.config import DataConfig
from training.data import medquad
from training.data.pairs import Pair, PairSet, RetrievalSet, TaskData
from training.data.sources import EmbedFn, _need

MEDQUAD_EVAL_FOCI = 60  # per split, as the quality benchmark's default (training/quality/tasks.py TaskLimits)
STS_POSITIVE, STS_NEGATIVE = 4.0, 1.5  # STS-B 0-5 scores: >= 4 "same meaning", <= 1.5 "different", between dropped


def medquad_qa(cfg: DataConfig, embed: EmbedFn) -> TaskData:  # noqa: ARG001 - uniform signature
    """MedQuAD question -> answer start, split by focus (training/data/medquad.py owns the split)."""
    data = medquad.load_medquad(cfg)
    sets = medquad.eval_sets(data, min(MEDQUAD_EVAL_FOCI, len(data.reserved) // 2))
    return TaskData(
        train=medquad.train_units(data, cfg.max_train_anchors, cfg.seed), dev=[sets["dev"]], test=[sets["test"]]
    )


def _read_hdfc(path: Path) -> dict[str, dict]:
    """Questions de-duplicated case- and space-insensitively; a repeated question keeps all its answers."""
    by_question: dict[str, dict] = {}
    with _need(path).open(encoding="utf-8", newline="") as fh:
        for number, row in enumerate(csv.DictReader(fh), start=2):
            missing = {"Question", "Answer", "Class"} - set(row)
            if missing:
                raise ValueError(f"{path}:{number}: missing column(s) {sorted(missing)}")
            question, answer = " ".join(row["Question"].split()), " ".join(row["Answer"].split())
            if not question or not answer:
                continue
            entry = by_question.setdefault(
                question.lower(), {"question": question, "answers": [], "class": row["Class"]}
            )
            if answer not in entry["answers"]:
                entry["answers"].append(answer)
    return by_question


def bank_faq_hdfc(cfg: DataConfig, embed: EmbedFn) -> TaskData:  # noqa: ARG001
    """HDFC bank FAQ, question -> answer. Questions split 70/15/15 (seeded); dev and test are question ->
    answer retrieval over their split's answers. Negative: an answer of another question of the same section."""
    entries = _read_hdfc(Path(cfg.data_dir) / "bank_faq_hdfc" / "BankFAQs.csv")
    keys = sorted(entries)
    rng = random.Random(cfg.seed)
    rng.shuffle(keys)
    n = len(keys)
    splits = {"train": keys[: int(n * 0.7)], "dev": keys[int(n * 0.7) : int(n * 0.85)], "test": keys[int(n * 0.85) :]}
    sets: dict[str, RetrievalSet] = {}
    for split in ("dev", "test"):
        chosen = splits[split]
        labels = [f"hdfc:{k}" for k in chosen]
        corpus = [entries[k]["answers"][0][: medquad.ANSWER_CHARS] for k in chosen]
        sets[split] = RetrievalSet("hdfc", corpus, labels, [entries[k]["question"] for k in chosen], labels)
    banned = {t for s in sets.values() for t in (*s.corpus_texts, *s.queries)}
    train_keys = [k for k in splits["train"] if entries[k]["question"] not in banned]
    by_class: dict[str, list[str]] = defaultdict(list)
    for key in train_keys:
        by_class[entries[key]["class"]].append(key)
    units: list[tuple[Pair, ...]] = []
    for key in train_keys:
        entry, group = entries[key], f"hdfc:{key}"
        answers = [a[: medquad.ANSWER_CHARS] for a in entry["answers"]]
        answers = [a for a in answers if a not in banned]
        if not answers:
            continue
        unit = [Pair(entry["question"], rng.choice(answers), 1, group, group)]
        others = [o for o in by_class[entry["class"]] if o != key]
        if others:
            other = rng.choice(others)
            negative = entries[other]["answers"][0][: medquad.ANSWER_CHARS]
            if negative not in banned and negative not in answers:
                unit.append(Pair(entry["question"], negative, 0, group, f"hdfc:{other}"))
        units.append(tuple(unit))
    return TaskData(train=units[: cfg.max_train_anchors], dev=[sets["dev"]], test=[sets["test"]])


def _read_sts(path: Path) -> list[tuple[str, str, float]]:
    rows = []
    # No quoting in STS-B files (a quote is text); some rows carry extra trailing source fields.
    with _need(path).open(encoding="utf-8", newline="") as fh:
        for number, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if len(row) < 7:
                raise ValueError(f"{path}:{number}: expected >= 7 tab-separated fields, got {len(row)}")
            rows.append((row[5].strip(), row[6].strip(), float(row[4])))
    return rows


def _binarised(rows: list[tuple[str, str, float]]) -> list[Pair]:
    return [
        Pair(a, b, int(score >= STS_POSITIVE))
        for a, b, score in rows
        if score >= STS_POSITIVE or score <= STS_NEGATIVE
    ]


def stsbenchmark(cfg: DataConfig, embed: EmbedFn) -> TaskData:  # noqa: ARG001
    """STS-B (general domain): scores >= 4 as matches, <= 1.5 as non-matches, the middle dropped. Dev and
    test pair sets come from sts-dev and sts-test; train pairs sharing a sentence with them are dropped."""
    root = Path(cfg.data_dir) / "stsbenchmark"
    dev, test = _binarised(_read_sts(root / "sts-dev.csv")), _binarised(_read_sts(root / "sts-test.csv"))
    dev_set, test_set = PairSet("stsb", dev[: cfg.max_eval_pairs]), PairSet("stsb", test[: cfg.max_eval_pairs])
    banned = {t for p in dev + test for t in (p.text_a, p.text_b)}
    train = [p for p in _binarised(_read_sts(root / "sts-train.csv")) if not {p.text_a, p.text_b} & banned]
    random.Random(cfg.seed).shuffle(train)
    return TaskData(train=[(p,) for p in train[: cfg.max_train_anchors]], dev=[dev_set], test=[test_set])
