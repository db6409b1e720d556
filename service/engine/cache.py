"""QueryCache: an LRU of query embeddings, bounded in entries and bytes. FAQ chatbot traffic repeats itself.

Keys are the model fingerprint plus the normalised text (`normalise`), so a model change can never serve an old
vector. Not thread-safe: used from the event loop only. Knows nothing about torch or HTTP.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import OrderedDict

import numpy as np

_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Unicode NFC, whitespace runs folded to one space, ends stripped. The engine embeds this form whenever the
    cache is on, so one key always means one vector. Case is kept: models may be case-sensitive."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


class QueryCache:
    def __init__(self, *, fingerprint: str, max_entries: int, max_bytes: int) -> None:
        self._fingerprint = fingerprint
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], tuple[np.ndarray, int, bool]] = OrderedDict()
        self.bytes = 0

    @property
    def enabled(self) -> bool:
        return self._max_entries > 0 and self._max_bytes > 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, text: str) -> tuple[np.ndarray, int, bool] | None:
        """(vector, token count, truncated) for a normalised text, refreshed as most recently used; None on a miss."""
        key = (self._fingerprint, text)
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, text: str, vector: np.ndarray, n_tokens: int, truncated: bool = False) -> None:
        if not self.enabled:
            return
        key = (self._fingerprint, text)
        size = _size(text, vector)
        if size > self._max_bytes:
            return  # larger than the whole cache: never kept
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= _size(text, old[0])
        stored = vector.copy()
        stored.flags.writeable = False  # callers share it: nobody may change a cached vector in place
        self._items[key] = (stored, n_tokens, truncated)
        self.bytes += size
        while len(self._items) > self._max_entries or self.bytes > self._max_bytes:
            (_, old_text), (old_vector, _, _) = self._items.popitem(last=False)
            self.bytes -= _size(old_text, old_vector)


def _size(text: str, vector: np.ndarray) -> int:
    """Bytes held for one entry: the vector's buffer plus the key string."""
    return int(vector.nbytes) + sys.getsizeof(text)
