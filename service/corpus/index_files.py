"""Index files on disk: `<corpus>.faiss` plus `<corpus>.manifest.json`, each written atomically.

The files are a cache of the store: the manifest records the model fingerprint, dimension, vector count and the
store generation the index reflects, and a file that disagrees with the store is ignored (and rebuilt from the
stored vectors) rather than trusted. The index is written before its manifest, so a crash in between leaves an
old manifest that no longer matches: a rebuild, never a wrong index.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from service.corpus.index import VectorIndex, write_atomically
from service.corpus.snapshot import Snapshot

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1


class IndexFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _paths(self, name: str) -> tuple[Path, Path]:
        return self.folder / f"{name}.faiss", self.folder / f"{name}.manifest.json"

    def save(self, name: str, snapshot: Snapshot) -> None:
        index_path, manifest_path = self._paths(name)
        if snapshot.index is None:
            self.remove(name)
            return
        snapshot.index.save(index_path)
        manifest = {
            "format_version": MANIFEST_VERSION,
            "fingerprint": snapshot.fingerprint,
            "dimension": snapshot.index.dimension,
            "count": len(snapshot.index),
            "generation": snapshot.generation,
            "kind": snapshot.index.kind,
            "deleted": sorted(snapshot.index.deleted),
        }
        write_atomically(manifest_path, json.dumps(manifest).encode())
        logger.debug("index saved corpus=%s vectors=%d generation=%d", name, len(snapshot.index), snapshot.generation)

    def load(self, name: str, *, generation: int, fingerprint: str) -> VectorIndex | None:
        """The saved index if it reflects exactly this store generation and model, else None."""
        index_path, manifest_path = self._paths(name)
        if not (index_path.exists() and manifest_path.exists()):
            return None
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if (manifest.get("format_version"), manifest.get("generation"), manifest.get("fingerprint")) != (
                MANIFEST_VERSION, generation, fingerprint
            ):
                logger.info("index file stale corpus=%s: rebuilding from stored vectors", name)
                return None
            index = VectorIndex.load(index_path, deleted=frozenset(int(i) for i in manifest["deleted"]))
            if len(index) != manifest["count"] or index.dimension != manifest["dimension"]:
                logger.warning("index file disagrees with its manifest corpus=%s: rebuilding", name)
                return None
            return index
        except (OSError, ValueError, KeyError, RuntimeError) as err:  # faiss raises RuntimeError on corrupt files
            logger.warning("index file unreadable corpus=%s (%s): rebuilding", name, err)
            return None

    def remove(self, name: str) -> None:
        for path in self._paths(name):
            path.unlink(missing_ok=True)
