"""Named adapters for the bundled datasets: name -> TaskData (train units, dev and test sets).

Every split is fixed by `data.seed` and recorded in the run folder. Teacher embeddings (for hard-negative
mining) come in as a callable, so this module never loads a model.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.config import DataConfig
from training.data.pairs import Pair, PairSet, RetrievalSet, TaskData, eval_texts, read_pairs

EmbedFn = Callable[[list[str]], np.ndarray]  # texts -> (N, D) L2-normalised
logger = logging.getLogger(__name__)


def _need(path: Path) -> Path:
    if not path.exists():
        raise ValueError(
            f"data file {path} not found; set data.data_dir (or FLIPMATCH_DATASETS_DIR) to the data folder"
        )
    return path


def _read_banking77(path: Path) -> dict[str, list[str]]:
    by_intent: dict[str, list[str]] = defaultdict(list)
    with _need(path).open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            by_intent[row["category"]].append(row["text"].strip())
    return dict(sorted(by_intent.items()))


def banking77(cfg: DataConfig, embed: EmbedFn) -> TaskData:
    """Same intent = positive; hard negative = the teacher's nearest query of another intent."""
    rng = random.Random(cfg.seed)
    root = Path(cfg.data_dir) / "banking77"
    train, test = _read_banking77(root / "train.csv"), _read_banking77(root / "test.csv")
    unknown = sorted(set(cfg.exclude_intents) - set(train))
    if unknown:
        raise ValueError(f"data.exclude_intents: not Banking77 intents: {unknown}; see train.csv's category column")
    dev_q, dev_l, faq_t, faq_l = [], [], [], []
    pool: list[tuple[str, str]] = []
    for intent, texts in train.items():
        reserved = set(list(dict.fromkeys(texts))[: cfg.reserved_per_intent])  # the demo corpus's questions
        texts = [t for t in texts if t not in reserved]
        rng.shuffle(texts)
        n_dev, n_faq = cfg.dev_queries_per_intent, cfg.faq_alternates_per_intent
        dev_q += texts[:n_dev]
        dev_l += [intent] * len(texts[:n_dev])
        faq_t += texts[n_dev : n_dev + n_faq]
        faq_l += [intent] * len(texts[n_dev : n_dev + n_faq])
        if intent not in cfg.exclude_intents:  # after the shuffle: dev and FAQ splits stay the same
            pool += [(t, intent) for t in texts[n_dev + n_faq :]]
    rng.shuffle(pool)
    anchors = pool[: cfg.max_train_anchors]
    # Mine among a bounded candidate pool: enough for hard negatives, cheap to embed on CPU.
    candidates = pool[: max(cfg.max_train_anchors * 2, 500)]
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in candidates:
        by_intent[intent].append(text)
    cand_vecs = embed([t for t, _ in candidates])
    anchor_vecs = embed([t for t, _ in anchors])
    sims = anchor_vecs @ cand_vecs.T  # (A, C)
    cand_intents = np.array([i for _, i in candidates])
    units: list[tuple[Pair, ...]] = []
    for row, (text, intent) in enumerate(anchors):
        positives = [t for t in by_intent[intent] if t != text]
        if not positives:
            continue
        scores = np.where(cand_intents == intent, -np.inf, sims[row])
        top = np.argsort(-scores)[:5]
        negative, neg_intent = candidates[int(rng.choice(top))]
        units.append(
            (
                Pair(text, rng.choice(positives), 1, intent, intent),
                Pair(text, negative, 0, intent, neg_intent),
            )
        )
    test_q, test_l = _stratified(test, cfg.max_test_queries, rng)
    return TaskData(
        train=units,
        dev=[RetrievalSet("banking77", faq_t, faq_l, dev_q, dev_l)],
        test=[RetrievalSet("banking77", faq_t, faq_l, test_q, test_l)],
    )


def _stratified(by_label: dict[str, list[str]], limit: int, rng: random.Random) -> tuple[list[str], list[str]]:
    per = max(1, limit // max(1, len(by_label)))
    texts, labels = [], []
    for label, items in by_label.items():
        chosen = rng.sample(items, min(per, len(items)))
        texts += chosen
        labels += [label] * len(chosen)
    return texts, labels


def _split_units(units: list[tuple[Pair, ...]], seed: int) -> tuple[list, list, list]:
    rng = random.Random(seed)
    units = units[:]
    rng.shuffle(units)
    n = len(units)
    return units[: int(n * 0.7)], units[int(n * 0.7) : int(n * 0.85)], units[int(n * 0.85) :]


def _pairset(name: str, units: list[tuple[Pair, ...]], limit: int) -> PairSet:
    return PairSet(name, [p for unit in units for p in unit][:limit])


def medical_question_pairs(cfg: DataConfig, embed: EmbedFn) -> TaskData:  # noqa: ARG001 - uniform signature
    """Curai MQP: doctor-written similar (1) and related-but-different (0) rewrites; split by question_1."""
    by_question: dict[str, list[Pair]] = defaultdict(list)
    ids: dict[str, str] = {}
    with _need(Path(cfg.data_dir) / "medical_question_pairs" / "mqp.csv").open(encoding="utf-8", newline="") as fh:
        for number, row in enumerate(csv.reader(fh), start=1):
            if len(row) != 4:
                raise ValueError(f"mqp.csv:{number}: expected 4 columns (dr_id, q1, q2, label), got {len(row)}")
            _, q1, q2, label = row
            gid = ids.setdefault(q1, f"mqp:{len(ids)}")
            y = int(label)
            by_question[q1].append(Pair(q1, q2, y, gid, gid if y else None))
    train, dev, test = _split_units([tuple(v) for v in by_question.values()], cfg.seed)
    return TaskData(
        train=train[: cfg.max_train_anchors],
        dev=[_pairset("mqp", dev, cfg.max_eval_pairs)],
        test=[_pairset("mqp", test, cfg.max_eval_pairs)],
    )


def medical_rqe(cfg: DataConfig, embed: EmbedFn) -> TaskData:  # noqa: ARG001
    """RQE: does the FAQ question answer the consumer question. The validation file, split into label-stratified
    seeded halves, gives dev and test."""
    root = Path(cfg.data_dir) / "medical_rqe"

    def read(name: str) -> list[tuple[Pair, ...]]:
        units = []
        with _need(root / name).open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                units.append((Pair(row["chq"], row["faq"], int(row["label"])),))
        return units

    train, valid = read("rqe_train.jsonl"), read("rqe_validation.jsonl")
    # No validation text in training; and chq == faq pairs (1,454 of the train positives) teach nothing:
    # both sides are one string, so teacher and student score them 1 already.
    banned = {t for unit in valid for p in unit for t in (p.text_a, p.text_b)}
    train = [u for u in train if u[0].text_a != u[0].text_b and not {u[0].text_a, u[0].text_b} & banned]
    random.Random(cfg.seed).shuffle(train)
    dev, test = _stratified_halves(valid, random.Random(cfg.seed))
    return TaskData(
        train=train[: cfg.max_train_anchors],
        dev=[_pairset("rqe", dev, cfg.max_eval_pairs)],
        test=[_pairset("rqe", test, cfg.max_eval_pairs)],
    )


def _stratified_halves(units: list[tuple[Pair, ...]], rng: random.Random) -> tuple[list, list]:
    """Seeded halves with the same share of each label. The RQE validation file is ordered: its first half is
    62% positive and its second 23%, so a dev threshold chosen on one half did not carry to the other."""
    halves: tuple[list, list] = ([], [])
    for label in sorted({u[0].label for u in units}):
        group = [u for u in units if u[0].label == label]
        rng.shuffle(group)
        halves[0].extend(group[: len(group) // 2])
        halves[1].extend(group[len(group) // 2 :])
    for half in halves:
        rng.shuffle(half)
    return halves


def user_file(path: str, cfg: DataConfig) -> TaskData:
    pairs = read_pairs(path, cfg.file_columns)
    train, dev, test = _split_units([(p,) for p in pairs], cfg.seed)
    name = Path(path).stem
    return TaskData(
        train=train, dev=[_pairset(name, dev, cfg.max_eval_pairs)], test=[_pairset(name, test, cfg.max_eval_pairs)]
    )


SOURCES: dict[str, Callable[[DataConfig, EmbedFn], TaskData]] = {
    "banking77": banking77,
    "medical_question_pairs": medical_question_pairs,
    "medical_rqe": medical_rqe,
}
UNLABELLED = "unlabelled"  # the text-pool source: built from other sources' training texts


def _registry() -> dict[str, Callable[[DataConfig, EmbedFn], TaskData]]:
    from training.data.broad import bank_faq_hdfc, medquad_qa, stsbenchmark  # imports this module

    return {**SOURCES, "medquad_qa": medquad_qa, "bank_faq_hdfc": bank_faq_hdfc, "stsbenchmark": stsbenchmark}


def _check_sources(cfg: DataConfig, known: dict) -> None:
    for name in [*cfg.sources, *(cfg.unlabelled_from if UNLABELLED in cfg.sources else [])]:
        if not name.startswith("file:") and name not in known and name != UNLABELLED:
            raise ValueError(
                f"data.sources: unknown source {name!r}; known: {sorted(known)}, {UNLABELLED} or file:<path>"
            )
    used = {*cfg.sources, *(cfg.unlabelled_from if UNLABELLED in cfg.sources else [])}
    unknown = set(cfg.anchors_per_source) - used
    if unknown:
        raise ValueError(f"data.anchors_per_source names sources that are not used: {sorted(unknown)}")
    bad_caps = {k: v for k, v in cfg.anchors_per_source.items() if v < 1}
    if bad_caps:
        raise ValueError(f"data.anchors_per_source caps must be >= 1 (drop the source instead): {bad_caps}")
    if cfg.mix:
        missing, extra = set(cfg.sources) - set(cfg.mix), set(cfg.mix) - set(cfg.sources)
        if missing or extra:
            raise ValueError(
                f"data.mix must give a weight to every source in data.sources and nothing else; "
                f"missing {sorted(missing)}, not a source {sorted(extra)}"
            )
        bad = {k: v for k, v in cfg.mix.items() if not v > 0}
        if bad:
            raise ValueError(f"data.mix weights must be > 0 (drop the source from data.sources instead): {bad}")


def load_task_data(cfg: DataConfig, embed: EmbedFn) -> TaskData:
    """Build train units and eval sets from every configured source (checked before any model loads).
    `data.origin` names each training unit's source, for data.mix."""
    known = _registry()
    _check_sources(cfg, known)
    loaded: dict[str, TaskData] = {}

    def capped(name: str) -> DataConfig:
        return cfg.model_copy(update={"max_train_anchors": cfg.anchors_per_source.get(name, cfg.max_train_anchors)})

    def load(name: str) -> TaskData:
        if name not in loaded:
            own = capped(name)
            if name.startswith("file:"):
                loaded[name] = user_file(name.removeprefix("file:"), own)
            else:
                loaded[name] = known[name](own, embed)
        return loaded[name]

    data = TaskData()
    for name in cfg.sources:
        if name == UNLABELLED:
            from training.data.unlabelled import pool_units

            # the pool's own cap (anchors_per_source.unlabelled) bounds its teacher and prefix-cache fill
            part = TaskData(train=pool_units([load(n) for n in cfg.unlabelled_from], capped(name), embed))
        else:
            part = load(name)
        data.extend(part)
        data.origin += [name] * len(part.train)
    keep = eval_free(data.train, [*data.dev, *data.test])
    if not all(keep):
        logger.info("dropped %d training units that share a text with a dev or test set", keep.count(False))
        data.train = [u for u, k in zip(data.train, keep, strict=True) if k]
        data.origin = [o for o, k in zip(data.origin, keep, strict=True) if k]
    if not data.train:
        raise ValueError("data.sources produced no training pairs")
    return data


def _folded(text: str) -> str:
    return " ".join(text.lower().split())


def eval_free(units: list[tuple[Pair, ...]], sets: list[PairSet | RetrievalSet]) -> list[bool]:
    """Per training unit: False when one of its texts (case and whitespace folded) is one some dev or test set
    embeds. The datasets repeat texts across their own splits (6 Banking77 test questions are also train
    questions; MQP reuses rewrites across questions), and across sources; a split by row or group lets them in."""
    held = {_folded(t) for t in eval_texts(sets)}
    return [not any(_folded(t) in held for p in u for t in (p.text_a, p.text_b)) for u in units]

