"""ItemKNN: cosine item–item similarity over the binary train matrix, pruned to each item's top-k
neighbours (Deshpande & Karypis 2004). score(u, j) = Σ_{i ∈ I_u ∩ N_k(j)} cos(i, j).

Similarities are computed a block of items at a time (sparse product → top-k among each row's
nonzero co-counts), so memory stays O(the block's co-occurring pairs) instead of O(n_items²) and
the time O(co-occurring pairs) instead of a pass over every item pair."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..base import Ranker, TrainData
from . import register


@register(order=20)
class ItemKNN(Ranker):
    name = "itemknn"
    tuning = {"neighbours": [50, 200]}
    grid_max_events = 1_000_000     # each fit's co-occurrence grows with the square of heavy users' items

    def __init__(self, neighbours: int = 100, shrink: float = 0.0, block: int = 1024, seed: int = 0):
        super().__init__(seed)
        self.neighbours, self.shrink, self.block = neighbours, shrink, block

    def fit(self, data: TrainData, validation: TrainData | None = None) -> ItemKNN:
        self.seen = data.matrix()
        x = self.seen.tocsc().astype(np.float32)
        counts = np.asarray(x.sum(axis=0)).ravel()
        norms = np.sqrt(counts)
        xt = x.T.tocsr()
        n, k = data.n_items, min(self.neighbours, data.n_items - 1)
        rows, cols, vals = [], [], []
        for start in range(0, n, self.block):
            stop = min(start + self.block, n)
            # only the pairs that share a user can be neighbours: select among the block's nonzero
            # co-counts, not among every item (a dense row pass cost O(n_items²) over a fit)
            overlap = (xt[start:stop] @ x).tocsr()                        # (block, n) co-counts
            row = np.repeat(np.arange(start, stop), np.diff(overlap.indptr))
            sims = overlap.data / (norms[row] * norms[overlap.indices] + self.shrink + 1e-12)
            keep = (sims > 0) & (overlap.indices != row)                  # no self-similarity
            row, col, sims = row[keep], overlap.indices[keep], sims[keep]
            keep = _top_per_row(row - start, sims, k, stop - start)
            rows.append(row[keep])
            cols.append(col[keep])
            vals.append(sims[keep])
        # neighbours[j, i] = cos(i, j) for i among j's top-k; score = X_u @ neighbours.T
        self.neighbour_matrix = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        self.similarity_t = self.neighbour_matrix.T.tocsr()
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return (self.seen[np.atleast_1d(users)] @ self.similarity_t).toarray()


def _top_per_row(row: np.ndarray, values: np.ndarray, k: int, n_rows: int) -> np.ndarray:
    """Mask of each row's ``k`` largest ``values`` (entries grouped by ``row`` ascending, 0-based)."""
    bounds = np.searchsorted(row, np.arange(n_rows + 1))
    keep = np.ones(len(values), dtype=bool)
    for r in np.flatnonzero(np.diff(bounds) > k):
        segment = values[bounds[r]:bounds[r + 1]]
        beyond = np.argpartition(-segment, k - 1)[k:]
        keep[bounds[r] + beyond] = False
    return keep
