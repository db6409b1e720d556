"""Path parameters shared by the corpus routes, validated before any lookup (no traversal, bounded labels)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from service.corpus.store import CORPUS_NAME, ENTRY_ID

CorpusName = Annotated[str, Path(pattern=CORPUS_NAME.pattern, description="Corpus name.", examples=["banking77"])]
EntryId = Annotated[str, Path(pattern=ENTRY_ID.pattern, description="Entry id.", examples=["card_arrival"])]
