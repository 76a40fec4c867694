"""The one small contract every ranker obeys (after Cornac): fit, score, recommend, save/load, and
user/item vectors whose inner product is the score wherever the model allows it, so a vector index
can serve it.

Users and items are dense indices 0..n-1 into ``TrainData.user_ids`` / ``item_ids``. Item features
(L2-normalised image embeddings) are rows aligned with ``item_ids``; every catalogue item has one,
including items nobody has interacted with yet (the cold items only visual models can find).
Catalogue content (``recsys.item_content``: labels, title words, release date) may ride along.

Rankers trained epoch by epoch build on ``recsys.iterative.IterativeRanker``; every ranker module in
``recsys.models`` registers its class (``recsys.models.register``) and the zoo finds it there.
"""
from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp


@dataclass
class TrainData:
    user_ids: np.ndarray            # (n_users,) external ids, str
    item_ids: np.ndarray            # (n_items,) external ids, str — the whole catalogue
    users: np.ndarray               # (n_interactions,) int user index
    items: np.ndarray               # (n_interactions,) int item index
    timestamps: np.ndarray          # (n_interactions,) float unix seconds
    item_features: np.ndarray | None = None   # (n_items, d) float32, L2-normalised
    item_attributes: sp.csr_matrix | None = None  # (n_items, a) float32: labels, title words, era
    item_available: np.ndarray | None = None   # (n_items,) unix seconds available since, NaN unknown

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def matrix(self) -> sp.csr_matrix:
        """Binary user × item matrix of train positives."""
        data = np.ones(len(self.users), dtype=np.float32)
        m = sp.csr_matrix((data, (self.users, self.items)), shape=(self.n_users, self.n_items))
        m.data[:] = 1.0
        return m

    def sequences(self) -> list[np.ndarray]:
        """Each user's item indices in time order (ties broken by item index)."""
        order = np.lexsort((self.items, self.timestamps, self.users))
        users, items = self.users[order], self.items[order]
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        return [items[bounds[u]:bounds[u + 1]] for u in range(self.n_users)]


# What a ranker may need from a split: the TrainData field that holds it, and how to attach it.
INPUTS = {
    "image_features": ("item_features", "image features: attach them with split.with_item_features()"),
    "item_content": ("item_attributes", "item content: attach it with split.with_item_content()"),
}


class Ranker(ABC):
    name: str = "ranker"
    # keys of INPUTS the zoo must find on a split before it trains this ranker as configured by
    # default (``fit`` may accept less, e.g. a content-only ablation)
    needs: frozenset[str] = frozenset()
    # small grid the zoo searches on the validation slice (``zoo.train``); empty: the defaults
    tuning: ClassVar[dict[str, list]] = {}
    # above this many training events the grid is not searched (the defaults are fitted once): for
    # rankers whose every fit grows faster than the events and cannot be stopped part-way
    grid_max_events: ClassVar[int | None] = None
    # its asset's dagster/priority: where steps wait for an executor slot, the slowest ranker starts
    # first (the evaluation waits for the last ranker to finish)
    train_priority: ClassVar[int] = 5

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.seen: sp.csr_matrix | None = None

    @abstractmethod
    def fit(self, data: TrainData, validation: TrainData | None = None) -> Ranker:
        """Train; ``validation`` (held-out positives carved from train) may drive early stopping."""

    @classmethod
    def missing_inputs(cls, data: TrainData) -> list[str]:
        """What ``data`` lacks of ``needs``, each as "<input>: attach it with ...", in INPUTS order."""
        return [how for need, (field, how) in INPUTS.items() if need in cls.needs and getattr(data, field) is None]

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) scores; higher is better."""

    def recommend(self, users: np.ndarray, k: int = 20, exclude_seen: bool = True) -> np.ndarray:
        """(len(users), k) item indices, best first, the user's train positives excluded."""
        scores = self.score(np.asarray(users)).astype(np.float32, copy=True)
        return self.best_of(scores, users, k, exclude_seen)

    def best_of(self, scores: np.ndarray, users: np.ndarray, k: int, exclude_seen: bool = True) -> np.ndarray:
        """``recommend`` from these users' scores (changed in place: their train positives -inf)."""
        if exclude_seen and self.seen is not None:
            rows = self.seen[np.asarray(users)]
            scores[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
        k = min(k, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1)

    def user_vectors(self) -> np.ndarray | None:
        """(n_users, d) with score = user_vectors @ item_vectors.T, or None if not factorised."""
        return None

    def item_vectors(self) -> np.ndarray | None:
        return None

    def save(self, path: Path) -> None:
        Path(path).write_bytes(pickle.dumps(self))

    @classmethod
    def load(cls, path: Path) -> Ranker:
        model = pickle.loads(Path(path).read_bytes())
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model
