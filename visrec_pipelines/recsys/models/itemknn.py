"""ItemKNN: cosine item–item similarity over the binary train matrix, pruned to each item's top-k
neighbours (Deshpande & Karypis 2004). score(u, j) = Σ_{i ∈ I_u ∩ N_k(j)} cos(i, j).

Similarities are computed a block of items at a time (sparse product → dense block → top-k), so
memory stays O(block × n_items) instead of O(n_items²)."""
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
            overlap = (xt[start:stop] @ x).toarray()                      # (block, n) co-counts
            sims = overlap / (np.outer(norms[start:stop], norms) + self.shrink + 1e-12)
            sims[np.arange(stop - start), np.arange(start, stop)] = 0.0   # no self-similarity
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            top_vals = np.take_along_axis(sims, top, axis=1)
            keep = top_vals > 0
            rows.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
            cols.append(top[keep])
            vals.append(top_vals[keep])
        # neighbours[j, i] = cos(i, j) for i among j's top-k; score = X_u @ neighbours.T
        self.neighbour_matrix = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        self.similarity_t = self.neighbour_matrix.T.tocsr()
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return (self.seen[np.atleast_1d(users)] @ self.similarity_t).toarray()
