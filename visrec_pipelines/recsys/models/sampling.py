"""Vectorised (u, i, j) triple sampling for the pairwise (BPR-style) rankers.

A whole epoch of triples is drawn with a handful of numpy calls: positives (u, i) uniformly with
replacement (as Cornac's BPR does), negatives j from a pool, and the few j that hit one of the
user's positives are redrawn together until none is left. Membership is a lookup in a dense
user × item bitmap when that fits in ``BITMAP_LIMIT`` bytes, else a binary search over sorted keys.
"""
from __future__ import annotations

import numpy as np

from ..base import TrainData

BITMAP_LIMIT = 1 << 28


class TripleSampler:
    def __init__(self, data: TrainData, rng: np.random.Generator,
                 negative_pool: np.ndarray | None = None):
        self.rng, self.n_items = rng, data.n_items
        self.users = data.users.astype(np.int64)
        self.items = data.items.astype(np.int64)
        self.pool = None if negative_pool is None else np.asarray(negative_pool, dtype=np.int64)
        keys = self.users * self.n_items + self.items
        if data.n_users * data.n_items <= BITMAP_LIMIT:
            self.bitmap = np.zeros(data.n_users * data.n_items, dtype=bool)
            self.bitmap[keys] = True
        else:
            self.bitmap, self.sorted_keys = None, np.unique(keys)

    def _draw_negatives(self, n: int) -> np.ndarray:
        if self.pool is None:
            return self.rng.integers(0, self.n_items, n)
        return self.pool[self.rng.integers(0, len(self.pool), n)]

    def _is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        if self.bitmap is not None:
            return self.bitmap[keys]
        at = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        return self.sorted_keys[at] == keys

    def epoch(self, n: int | None = None, max_rounds: int = 50) -> tuple[np.ndarray, ...]:
        """``n`` triples (default: one per positive), as int64 arrays u, i, j."""
        n = len(self.users) if n is None else n
        picks = self.rng.integers(0, len(self.users), n)
        users, positives = self.users[picks], self.items[picks]
        negatives = self._draw_negatives(n)
        clash = self._is_positive(users, negatives)
        for _ in range(max_rounds):          # each round redraws only the clashing few
            if not clash.any():
                break
            negatives[clash] = self._draw_negatives(int(clash.sum()))
            clash[clash] = self._is_positive(users[clash], negatives[clash])
        return users, positives, negatives

