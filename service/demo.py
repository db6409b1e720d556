"""Demo corpora, loaded on start-up when `demo.preload` is set and they do not exist yet (or are empty):

- "banking77" (finance): one entry per Banking77 intent; question = the intent's first training question,
  alternates = its next training questions, answer = a templated placeholder naming the intent.
- "medquad" (healthcare): NIH MedQuAD question/answer pairs, sampled round-robin across its 9 source sites.

Each corpus is written in one transaction, so a crash mid-load leaves it absent or empty and the next start
redoes it; once written, later starts reload it from disk without re-embedding.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from service.corpus.calibrator import Calibrator
from service.corpus.registry import CorpusRegistry
from service.corpus.store import CorpusConfig, Entry
from service.errors import Conflict

logger = logging.getLogger(__name__)


def banking77_entries(data_dir: Path, *, max_alternates: int) -> list[Entry]:
    by_intent: dict[str, list[str]] = defaultdict(list)
    with (data_dir / "banking77" / "train.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            texts = by_intent[row["category"]]
            if row["text"].strip() and row["text"] not in texts:
                texts.append(row["text"].strip())
    entries = []
    for intent, texts in by_intent.items():
        topic = intent.replace("_", " ")
        answer = (f"[Demo answer] This question is about {topic}. A bank's FAQ would give its guidance on {topic} "
                  "here; Banking77 has questions only, so this text is a placeholder.")
        entries.append(Entry(intent, texts[0], tuple(texts[1 : 1 + max_alternates]), answer,
                             {"intent": intent, "source": "Banking77 (PolyAI, CC BY 4.0)"}))
    return entries


def medquad_entries(data_dir: Path, *, max_entries: int) -> list[Entry]:
    by_source: dict[str, list[Entry]] = defaultdict(list)
    seen: set[str] = set()
    with (data_dir / "medquad" / "medquad.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            question = record["question"].strip()
            if not question or question in seen or not record.get("answer"):
                continue  # MedQuAD repeats some template questions across documents: keep the first
            seen.add(question)
            metadata = {k: record[k] for k in ("source", "url", "focus", "qtype") if k in record}
            by_source[record["source"]].append(Entry(record["id"], question, (), record["answer"], metadata))
    # Round-robin across sources so a small cap still covers every NIH site.
    entries: list[Entry] = []
    queues = [list(reversed(v)) for _, v in sorted(by_source.items())]
    while len(entries) < max_entries and any(queues):
        for queue in queues:
            if queue and len(entries) < max_entries:
                entries.append(queue.pop())
    return entries


DEMO_DESCRIPTIONS = {
    "banking77": "Demo (finance): Banking77 intents as FAQ entries; answers are placeholders. CC BY 4.0.",
    "medquad": "Demo (healthcare): NIH MedQuAD questions and answers. CC BY 4.0. Not medical advice.",
}


async def preload(registry: CorpusRegistry, *, data_dir: Path, answer_threshold: float, medquad_max_entries: int,
                  banking77_max_alternates: int) -> None:
    builders: dict[str, Callable[[], list[Entry]]] = {
        "banking77": lambda: banking77_entries(data_dir, max_alternates=banking77_max_alternates),
        "medquad": lambda: medquad_entries(data_dir, max_entries=medquad_max_entries),
    }
    existing = {info.record.name: info for info in registry.list_all()}
    for name, build in builders.items():
        if name in existing and existing[name].entries > 0:
            continue
        started = time.perf_counter()
        try:
            entries = await asyncio.to_thread(build)
        except OSError as err:
            logger.warning("demo corpus %s skipped: %s (check FLIPMATCH_DEMO__DATA_DIR)", name, err)
            continue
        if name not in existing:
            try:
                await registry.create(name, CorpusConfig(description=DEMO_DESCRIPTIONS[name],
                                                         answer_threshold=answer_threshold))
            except Conflict:  # another replica sharing the store created it first: it loads it, we follow
                logger.info("demo corpus %s is being created by another replica", name)
                continue
        summary = await registry.upsert(name, entries)
        logger.info("demo corpus loaded name=%s entries=%d vectors=%d s=%.1f", name, summary.entries,
                    summary.vectors, time.perf_counter() - started)


async def calibrate(calibrator: Calibrator, registry: CorpusRegistry) -> None:
    """Self-calibrate each demo corpus that has no stored calibration yet (a stored one survives restarts; one
    made with another model is redone by `Calibrator.recalibrate_stale`)."""
    present = {info.record.name: info for info in registry.list_all()}
    for name in DEMO_DESCRIPTIONS:
        info = present.get(name)
        if info is None or info.entries == 0 or info.status != "ready":
            continue
        if await registry.get_calibration(name) is None:
            await calibrator.calibrate(name)
