"""Topic-aware batches (TAS-B, Hofstätter et al. 2021): units whose anchors the teacher places close together.

Random in-batch candidates are easy negatives: a question about a drug's dose against one about knee surgery.
The pair tasks test near misses (two questions on one drug that ask different things). When a batch's units of
a source are the teacher's neighbours of one seed unit, the in-batch matrix holds such near misses, and the
teacher's scores over them (L_dist) are the fine distinctions the student must learn.
"""

from __future__ import annotations

import numpy as np


def neighbour_table(vectors: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """(n, d) unit-normalised rows -> (n, min(k, n - 1)) indices of each row's nearest other rows, closest
    first. Chunked: a 10,000-row source needs no 10,000 x 10,000 matrix at once."""
    n = len(vectors)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64)
    vectors = vectors.astype(np.float32, copy=False)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        rows = np.arange(len(sims))
        sims[rows, rows + start] = -np.inf  # never its own neighbour
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return out
