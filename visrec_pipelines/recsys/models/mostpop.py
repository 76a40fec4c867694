"""MostPop: every user gets the items with the most train positives (the floor any model must beat)."""
from __future__ import annotations

import numpy as np

from ..base import Ranker, TrainData
from . import register


@register(order=10)
class MostPop(Ranker):
    name = "mostpop"

    def fit(self, data: TrainData, validation: TrainData | None = None) -> MostPop:
        self.seen = data.matrix()
        self.popularity = np.bincount(data.items, minlength=data.n_items).astype(np.float32)
        self.n_users = data.n_users
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(np.atleast_1d(users)), len(self.popularity))).copy()

    def user_vectors(self) -> np.ndarray:
        return np.ones((self.n_users, 1), dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        return self.popularity[:, None].copy()
