"""A trained ranker packed with everything needed to serve it by external ids — no training data.

Unknown users get a cold-start answer (popular items), never an error. The same bundle is what the
MLflow pyfunc wraps, what serving loads, and what the promotion gate re-scores on a new split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .base import Ranker, TrainData


@dataclass
class RankerBundle:
    ranker: Ranker
    user_ids: np.ndarray          # external ids, aligned with the ranker's user indices
    item_ids: np.ndarray          # external ids, aligned with the ranker's item indices
    popularity: np.ndarray        # train positives per item (cold-start answer)

    @classmethod
    def from_training(cls, ranker: Ranker, data: TrainData) -> RankerBundle:
        counts = np.bincount(data.items, minlength=data.n_items).astype(np.float32)
        return cls(ranker, np.asarray(data.user_ids).astype(str), np.asarray(data.item_ids).astype(str), counts)

    def __post_init__(self):
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self._item_index = {u: i for i, u in enumerate(self.item_ids)}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__post_init__()

    def user_index(self, user_id: str) -> int | None:
        return self._user_index.get(str(user_id))

    def item_index(self, item_id: str) -> int | None:
        return self._item_index.get(str(item_id))

    def recommend(self, user_ids, k: int = 20) -> pd.DataFrame:
        """Rows of (user_id, rank, item_id, score, known_user); seen items excluded for known users."""
        rows = []
        known = [(u, self.user_index(u)) for u in map(str, user_ids)]
        idx = np.array([i for _, i in known if i is not None], dtype=int)
        top = self.ranker.recommend(idx, k=k) if len(idx) else np.empty((0, k), int)
        scores = self.ranker.score(idx) if len(idx) else None
        popular = np.argsort(-self.popularity, kind="stable")[:k]
        position = 0
        for user_id, index in known:
            if index is None:
                items, values, is_known = popular, self.popularity[popular], False
            else:
                items, values, is_known = top[position], scores[position, top[position]], True
                position += 1
            rows += [{"user_id": user_id, "rank": r + 1, "item_id": self.item_ids[i], "score": float(v),
                      "known_user": is_known} for r, (i, v) in enumerate(zip(items, values))]
        return pd.DataFrame(rows)

    def explain(self, user_id: str, k: int = 20) -> pd.DataFrame | None:
        """Why a known user's top ``k`` were picked, for rankers that can say (``ranker.explain``,
        e.g. ``two_stage``); None for other rankers and unknown users. Rows: rank, item_id,
        nominated_by ({signal: rank among the user's unseen items}), pushed_by ({signal group:
        contribution to the learned score}, largest first), look_alike_item_id and
        look_alike_similarity (the user's recent item it looks most like, image cosine)."""
        index = self.user_index(user_id)
        if index is None or not hasattr(self.ranker, "explain"):
            return None
        rows = []
        for rank, entry in enumerate(self.ranker.explain(index, k=k), start=1):
            alike = entry["look_alike"]
            rows.append({"rank": rank, "item_id": self.item_ids[entry["item"]], "nominated_by": entry["nominated_by"],
                         "pushed_by": entry["pushed_by"],
                         "look_alike_item_id": None if alike is None else self.item_ids[alike],
                         "look_alike_similarity": entry["look_alike_similarity"]})
        return pd.DataFrame(rows)


class BundleRanker(Ranker):
    """A bundle seen through another split's index spaces, so an old champion can be re-scored on
    today's split: users/items it never saw score -inf (they cannot be recommended by it)."""

    name = "bundle"

    def __init__(self, bundle: RankerBundle, data: TrainData):
        super().__init__()
        self.bundle = bundle
        self.user_map = np.array([bundle.user_index(u) if bundle.user_index(u) is not None else -1
                                  for u in data.user_ids])
        self.item_map = np.array([bundle.item_index(i) if bundle.item_index(i) is not None else -1
                                  for i in data.item_ids])
        self.seen = data.matrix()

    def fit(self, data, validation=None):
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        mapped = self.user_map[np.asarray(users)]
        out = np.full((len(users), len(self.item_map)), -np.inf, dtype=np.float32)
        known_users = mapped >= 0
        known_items = self.item_map >= 0
        if known_users.any():
            inner = self.bundle.ranker.score(mapped[known_users])[:, self.item_map[known_items]]
            block = out[known_users]
            block[:, known_items] = inner
            out[known_users] = block
        if (~known_users).any():  # cold users: popularity, as serving would answer
            pop = np.full(len(self.item_map), -np.inf, dtype=np.float32)
            pop[known_items] = self.bundle.popularity[self.item_map[known_items]]
            out[~known_users] = pop
        return out
