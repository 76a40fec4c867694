"""Visual kNN (content-based): a user's profile is the mean of the L2-normalised image features of
their train positives; an item's score is the cosine between profile and item features. Needs no
interactions on the item, so cold items are ranked like any other."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..base import Ranker, TrainData
from . import register


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


@register(order=40)
class VisualKNN(Ranker):
    name = "visual_knn"
    needs = frozenset({"image_features"})

    def fit(self, data: TrainData, validation: TrainData | None = None) -> VisualKNN:
        if data.item_features is None:
            raise ValueError("VisualKNN needs TrainData.item_features (image embeddings)")
        self.seen = data.matrix()
        self.items = unit_rows(data.item_features)
        counts = np.maximum(np.asarray(self.seen.sum(axis=1)), 1.0)
        profiles = sp.diags(1.0 / counts.ravel()) @ self.seen @ self.items   # mean of positives
        self.users = unit_rows(np.asarray(profiles))                         # cosine: unit length
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.users[np.atleast_1d(users)] @ self.items.T

    def user_vectors(self) -> np.ndarray:
        return self.users

    def item_vectors(self) -> np.ndarray:
        return self.items
