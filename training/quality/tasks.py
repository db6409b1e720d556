"""Benchmark evaluation sets with fixed, recorded splits (built from the bundled datasets; no models here).

finance: Banking77 FAQ retrieval with held-out intents, no-match detection on those intents, Banking77 pairs.
healthcare: Curai MQP pairs and RQE pairs (the training sources' own splits), MedQuAD question -> answer retrieval.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from training.config import DataConfig
from training.data.broad import stsbenchmark
from training.data.medquad import eval_sets, load_medquad
from training.data.pairs import Pair, PairSet, RetrievalSet
from training.data.sources import _read_banking77, medical_question_pairs, medical_rqe
from training.evaluate.evaluators import NoMatchSet


@dataclass(frozen=True)
class TaskLimits:
    """Subset sizes (CPU budget). Recorded in docs/results.md."""

    test_queries_per_intent: int = 4
    pairs_per_set: int = 200
    medquad_foci: int = 60  # per split; every (focus, qtype) group of a chosen focus enters the corpus
    answer_chars: int = 300
    holdout_every: int = 7  # Banking77: every 7th intent (sorted by name, from the 7th) is left out of the corpus


@dataclass
class QualityTasks:
    dev: list = field(default_factory=list)
    test: list = field(default_factory=list)
    agreement: list[PairSet] = field(default_factory=list)  # held-out (test) pairs for teacher-student Spearman
    splits: dict = field(default_factory=dict)  # what was held out, sizes, sha256 of the chosen ids


def _digest(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def _pairs_from_queries(name: str, by_intent: dict[str, list[str]], limit: int, rng: random.Random) -> PairSet:
    """One positive (another query of the intent) and one random other-intent negative per anchor."""
    intents = sorted(i for i, q in by_intent.items() if len(q) >= 2)
    pairs: list[Pair] = []
    for intent in intents:
        texts = by_intent[intent]
        anchor, positive = rng.sample(texts, 2)
        other = rng.choice([i for i in intents if i != intent])
        pairs += [Pair(anchor, positive, 1), Pair(anchor, rng.choice(by_intent[other]), 0)]
    rng.shuffle(pairs)
    return PairSet(name, pairs[:limit])


def banking77_tasks(cfg: DataConfig, limits: TaskLimits) -> QualityTasks:
    """Dev queries and FAQ alternates use exactly the split of training/data/sources.py (same seed, same
    order), so no dev or corpus text is a training anchor. Test queries come from test.csv."""
    rng = random.Random(cfg.seed)
    root = Path(cfg.data_dir) / "banking77"
    train, test = _read_banking77(root / "train.csv"), _read_banking77(root / "test.csv")
    held_out = sorted(train)[limits.holdout_every - 1 :: limits.holdout_every]
    dev: dict[str, list[str]] = {}
    faq_t, faq_l = [], []
    for intent, texts in train.items():  # replay sources.banking77's shuffles
        texts = texts[:]
        rng.shuffle(texts)
        n_dev, n_faq = cfg.dev_queries_per_intent, cfg.faq_alternates_per_intent
        dev[intent] = texts[:n_dev]
        if intent not in held_out:
            faq_t += texts[n_dev : n_dev + n_faq]
            faq_l += [intent] * len(texts[n_dev : n_dev + n_faq])
    split_rng = random.Random(cfg.seed + 77)
    test_by = {i: split_rng.sample(t, min(limits.test_queries_per_intent, len(t))) for i, t in test.items()}
    out = QualityTasks()
    for split, by_intent in (("dev", dev), ("test", test_by)):
        kept = [(q, i) for i, qs in by_intent.items() if i not in held_out for q in qs]
        gone = [q for i in held_out for q in by_intent[i]]
        sets = getattr(out, split)
        sets.append(RetrievalSet("b77_faq", faq_t, faq_l, [q for q, _ in kept], [i for _, i in kept]))
        if gone:  # fewer intents than holdout_every (small user data): no out-of-scope queries to score
            sets.append(NoMatchSet("b77_nomatch", faq_t, [q for q, _ in kept], gone))
        sets.append(_pairs_from_queries("b77_pairs", by_intent, limits.pairs_per_set, random.Random(cfg.seed + 1)))
    out.agreement.append(out.test[-1])
    out.splits["banking77"] = {
        "held_out_intents": held_out,
        "faq_entries": len(set(faq_l)),
        "dev_queries": sum(map(len, dev.values())),
        "test_queries": sum(map(len, test_by.values())),
    }
    return out


def medquad_tasks(cfg: DataConfig, limits: TaskLimits) -> QualityTasks:
    """Question -> answer retrieval. Entries are (focus, qtype) groups; the corpus text of an entry is the
    start of its answer, the query is its question. MedQuAD's questions are template-made and only 7 of
    14,332 groups have two distinct question strings, so question -> question retrieval would either leak
    (same string on both sides) or be tiny; question -> answer never puts the query text in the corpus.
    Foci are split (seeded) into dev and test, so no disease appears in both; every qtype of a chosen focus
    is in the corpus, so a query must get the question type right, not only the disease. Both splits come
    from the foci training/data/medquad.py reserves, so the medquad_qa training source never sees them."""
    data = load_medquad(cfg)
    sets = eval_sets(data, limits.medquad_foci, limits.answer_chars)
    out = QualityTasks()
    n = limits.medquad_foci
    for split, chosen in (("dev", data.reserved[:n]), ("test", data.reserved[n : 2 * n])):
        getattr(out, split).append(sets[split])
        labels = sets[split].corpus_labels
        out.splits[f"medquad_{split}"] = {"foci": len(chosen), "entries": len(labels), "ids_sha256": _digest(labels)}
    return out


def stsb_agreement(cfg: DataConfig, limits: TaskLimits) -> QualityTasks:
    """Teacher-student agreement only (no metric, no threshold) on STS-B test pairs: general-domain sentences
    from a source the presets never train on, so ρ(T,S) there reads how far the student follows its teacher
    off its training data."""
    data = stsbenchmark(cfg.model_copy(update={"max_eval_pairs": limits.pairs_per_set}), lambda _texts: None)
    out = QualityTasks(agreement=list(data.test))
    out.splits["stsb"] = {"agreement_pairs": len(data.test[0].pairs), "trained_on": "stsbenchmark" in cfg.sources}
    return out


def build_tasks(cfg: DataConfig, limits: TaskLimits, names: list[str]) -> QualityTasks:
    """names: any of banking77, mqp, rqe, medquad, stsb (agreement only)."""
    out = QualityTasks()
    for name in names:
        if name == "banking77":
            part = banking77_tasks(cfg, limits)
        elif name == "medquad":
            part = medquad_tasks(cfg, limits)
        elif name == "stsb":
            part = stsb_agreement(cfg, limits)
        elif name in ("mqp", "rqe"):
            source = medical_question_pairs if name == "mqp" else medical_rqe
            data = source(cfg.model_copy(update={"max_eval_pairs": limits.pairs_per_set}), lambda _texts: None)
            part = QualityTasks(dev=data.dev, test=data.test, agreement=list(data.test))
            part.splits[name] = {"dev_pairs": len(data.dev[0].pairs), "test_pairs": len(data.test[0].pairs)}
        else:
            raise ValueError(f"unknown quality task {name!r}; known: banking77, mqp, rqe, medquad, stsb")
        out.dev += part.dev
        out.test += part.test
        out.agreement += part.agreement
        out.splits.update(part.splits)
    return out
