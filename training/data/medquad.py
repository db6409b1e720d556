"""MedQuAD: the one place that decides which foci are evaluation foci, for the evaluation sets and the
training source alike, so no evaluation focus (nor any of its question or answer texts) is ever trained on.

Foci (normalised: whitespace collapsed, lower-cased) with at least two question types are shuffled with
`data.seed`; the first `data.medquad_eval_foci` of them are reserved. Evaluation draws its dev foci and its
test foci from the reserved part only; training uses every other focus, minus any row whose question or
answer start also occurs in a reserved focus (the same template question can sit under two spellings of
one disease).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from training.config import DataConfig
from training.data.pairs import Pair, RetrievalSet

ANSWER_CHARS = 300  # corpus texts are answer starts: what a 48-64 token encoder sees of an answer anyway


@dataclass(frozen=True)
class MedQuAD:
    rows: list[dict]  # every row, file order, with "focus_key" added
    reserved: list[str]  # evaluation foci, in reservation order (dev takes the first, test the next)

    def eval_texts(self, answer_chars: int = ANSWER_CHARS) -> set[str]:
        """Every question and answer start of a reserved focus (all rows, not only group representatives)."""
        keep = set(self.reserved)
        rows = [r for r in self.rows if r["focus_key"] in keep]
        return {r["question"] for r in rows} | {r["answer"][:answer_chars] for r in rows}


def focus_key(focus: str) -> str:
    return " ".join(focus.split()).lower()


def load_medquad(cfg: DataConfig) -> MedQuAD:
    path = Path(cfg.data_dir) / "medquad" / "medquad.jsonl"
    if not path.exists():
        raise ValueError(f"data file {path} not found; set data.data_dir (or FLIPMATCH_DATASETS_DIR)")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            row["focus_key"] = focus_key(row["focus"])
            if row["focus_key"] and row["answer"].strip():
                rows.append(row)
    qtypes: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        qtypes[row["focus_key"]].add(row["qtype"])
    foci = sorted(f for f, types in qtypes.items() if len(types) >= 2)
    random.Random(cfg.seed).shuffle(foci)
    return MedQuAD(rows, foci[: cfg.medquad_eval_foci])


def eval_sets(data: MedQuAD, foci_per_split: int, answer_chars: int = ANSWER_CHARS) -> dict[str, RetrievalSet]:
    """Question -> answer retrieval, dev and test, over (focus, qtype) groups of reserved foci. The first row
    of a group (file order) represents it. Raises when the reserve is too small for two splits."""
    if 2 * foci_per_split > len(data.reserved):
        raise ValueError(
            f"MedQuAD evaluation wants 2 x {foci_per_split} foci but data.medquad_eval_foci reserves "
            f"{len(data.reserved)}; raise data.medquad_eval_foci or lower the evaluation's foci"
        )
    groups: dict[tuple[str, str], dict] = {}
    for row in data.rows:
        groups.setdefault((row["focus_key"], row["qtype"]), row)
    by_focus: dict[str, list[dict]] = defaultdict(list)
    for (focus, _), row in sorted(groups.items()):
        by_focus[focus].append(row)
    n = foci_per_split
    out = {}
    for split, chosen in (("dev", data.reserved[:n]), ("test", data.reserved[n : 2 * n])):
        rows = [r for f in sorted(chosen) for r in by_focus[f]]
        corpus = [r["answer"][:answer_chars] for r in rows]
        labels = [r["id"] for r in rows]
        out[split] = RetrievalSet("medquad", corpus, labels, [r["question"] for r in rows], labels)
    return out


def train_units(data: MedQuAD, limit: int, seed: int, answer_chars: int = ANSWER_CHARS) -> list[tuple[Pair, ...]]:
    """Question -> its answer (positive) and, when the focus has one, the answer of another question type of
    the same focus (hard negative: the evaluation asks for the right question type of the right disease)."""
    reserved, banned = set(data.reserved), data.eval_texts(answer_chars)
    rows = [
        r
        for r in data.rows
        if r["focus_key"] not in reserved and r["question"] not in banned and r["answer"][:answer_chars] not in banned
    ]
    by_focus: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_focus[row["focus_key"]].append(row)
    rng = random.Random(seed)
    rng.shuffle(rows)
    units: list[tuple[Pair, ...]] = []
    for row in rows[:limit]:
        group = f"medquad:{row['focus_key']}|{row['qtype']}"
        answer = row["answer"][:answer_chars]
        unit = [Pair(row["question"], answer, 1, group, group)]
        others = [o for o in by_focus[row["focus_key"]] if o["qtype"] != row["qtype"]]
        if others:
            other = rng.choice(others)
            other_group = f"medquad:{row['focus_key']}|{other['qtype']}"
            unit.append(Pair(row["question"], other["answer"][:answer_chars], 0, group, other_group))
        units.append(tuple(unit))
    return units
