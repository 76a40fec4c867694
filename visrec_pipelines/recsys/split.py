"""The offline evaluation split (../shared/docs/evaluation.md, implemented exactly).

Validated behaviour events → positives → per-user chronological train / test, plus a validation
slice carved from train the same way, so hyper-parameters and early stopping never see test.

Steps, each counted in ``Split.report``:
1. positives: ratings >= ``rating_threshold`` and every event whose type is in
   ``implicit_positive_types`` (purchases, clicks, views, ... count as positive);
2. deduplicate (user, item), keeping the earliest timestamp;
3. drop interactions on items outside the catalogue (items with a usable image);
4. keep users with >= ``min_positives`` positives;
5. per user, sort by (timestamp, item_id); the last ``test_fraction`` (rounded up, at least 1) is
   test, the rest train;
6. validation: the same cut applied to each user's train positives, for users with >= 2 train
   positives (so every such user keeps >= 1 positive to learn from); ``tune_data()`` is train
   minus validation.

Item ids are ordered like the catalogue (cold items included, so every catalogue item is
rankable); users are sorted. Ties in timestamp are broken by item id, compared numerically when
every catalogue id is an integer (MovieLens) and as text otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..times import unix_seconds
from .base import TrainData

PROTOCOL_NAME = "visrec-chrono-leave-last-20pct"
IMPLICIT_POSITIVE_TYPES = ("view", "click", "add_to_cart", "purchase")


@dataclass
class Split:
    train: TrainData                 # every non-test positive: fit the final model on this
    validation: TrainData            # last slice of each user's train positives (a subset of train)
    test: TrainData
    report: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)

    def fit_data(self) -> TrainData:
        return self.train

    def tune_data(self) -> TrainData:
        """Train minus validation: fit on this while choosing hyper-parameters."""
        keep = ~_pair_in(self.train, self.validation)
        return _subset(self.train, keep)

    def for_tuning(self) -> Split:
        """The same protocol one level down: tune_data → validation, for ``metrics.evaluate``."""
        empty = _subset(self.validation, np.zeros(len(self.validation.users), dtype=bool))
        return Split(train=self.tune_data(), validation=empty, test=self.validation,
                     report={}, protocol={**self.protocol, "stage": "validation"})

    def with_item_features(self, features: np.ndarray) -> Split:
        """Attach (n_items, d) image features aligned with ``item_ids`` (L2-normalised here)."""
        features = np.asarray(features, dtype=np.float32)
        if features.shape[0] != self.train.n_items:
            raise ValueError(f"{features.shape[0]} feature rows for {self.train.n_items} items")
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        features = features / np.where(norms > 0, norms, 1.0)
        return replace(self, train=replace(self.train, item_features=features),
                       validation=replace(self.validation, item_features=features),
                       test=replace(self.test, item_features=features))

    def with_item_content(self, content) -> Split:
        """Attach an ``item_content.ItemContent`` aligned with ``item_ids``."""
        if content.attributes.shape[0] != self.train.n_items:
            raise ValueError(f"{content.attributes.shape[0]} content rows for {self.train.n_items} items")
        extra = {"item_attributes": content.attributes, "item_available": content.available_since}
        return replace(self, train=replace(self.train, **extra), validation=replace(self.validation, **extra),
                       test=replace(self.test, **extra))


def make_split(events: pd.DataFrame, catalogue_item_ids, *, rating_threshold: float = 4.0,
               implicit_positive_types=IMPLICIT_POSITIVE_TYPES, min_positives: int = 5,
               test_fraction: float = 0.2, item_features: np.ndarray | None = None) -> Split:
    """``events``: validated behaviour events (user_id, item_id, event_type, value, timestamp UTC)."""
    item_ids = pd.unique(pd.Series(catalogue_item_ids, dtype=str)).astype(str)
    report = {"events_in": len(events)}

    is_rating = events["event_type"].astype(str) == "rating"
    positive = (is_rating & (events["value"].astype(float) >= rating_threshold)) | \
        events["event_type"].astype(str).isin(list(implicit_positive_types))
    frame = pd.DataFrame({"user_id": events.loc[positive, "user_id"].astype(str),
                          "item_id": events.loc[positive, "item_id"].astype(str),
                          "t": unix_seconds(events.loc[positive, "timestamp"])})
    report["positives"] = len(frame)

    frame = frame.sort_values("t", kind="stable").drop_duplicates(["user_id", "item_id"])
    report["duplicates_removed"] = report["positives"] - len(frame)

    in_catalogue = frame["item_id"].isin(item_ids)
    report["off_catalogue_dropped"] = int((~in_catalogue).sum())
    frame = frame[in_catalogue]

    counts = frame.groupby("user_id")["item_id"].transform("size")
    report["users_below_min"] = int(frame.loc[counts < min_positives, "user_id"].nunique())
    report["positives_of_users_below_min"] = int((counts < min_positives).sum())
    frame = frame[counts >= min_positives]

    user_ids = np.sort(frame["user_id"].unique()).astype(str)
    users = np.searchsorted(user_ids, frame["user_id"].to_numpy())
    items = pd.Index(item_ids).get_indexer(frame["item_id"])
    times = frame["t"].to_numpy(dtype=float)
    tiebreak = _item_sort_keys(item_ids)[items]

    is_test = _last_fraction(users, times, tiebreak, test_fraction)
    train_mask = ~is_test
    is_val = np.zeros(len(users), dtype=bool)
    is_val[train_mask] = _last_fraction(users[train_mask], times[train_mask],
                                        tiebreak[train_mask], test_fraction, min_keep=1)

    def part(mask):
        return TrainData(user_ids=user_ids, item_ids=item_ids, users=users[mask],
                         items=items[mask], timestamps=times[mask], item_features=None)

    split = Split(train=part(train_mask), validation=part(is_val), test=part(is_test))
    warm = np.bincount(split.train.items, minlength=len(item_ids)) > 0
    report.update({
        "users": len(user_ids), "items": len(item_ids), "train": int(train_mask.sum()),
        "validation": int(is_val.sum()), "tune_train": int(train_mask.sum() - is_val.sum()),
        "test": int(is_test.sum()), "test_users": int(len(np.unique(users[is_test]))),
        "cold_items": int((~warm).sum()), "cold_test_positives": int((~warm[items[is_test]]).sum()),
    })
    split.report = report
    split.protocol = {"name": PROTOCOL_NAME, "rating_threshold": rating_threshold,
                      "implicit_positive_types": list(implicit_positive_types),
                      "min_positives": min_positives, "test_fraction": test_fraction,
                      "validation": "same cut on train, users with >= 2 train positives",
                      "order": "(timestamp, item_id)", "dedup": "earliest", "k": 20}
    return split if item_features is None else split.with_item_features(item_features)


def _last_fraction(users, times, tiebreak, fraction: float, min_keep: int = 0) -> np.ndarray:
    """Mask of each user's last ceil(fraction * n) rows (>= 1) in (time, tiebreak) order.

    Users with fewer than ``min_keep + 1`` rows contribute nothing (so ``min_keep`` stay behind)."""
    order = np.lexsort((tiebreak, times, users))
    sorted_users = users[order]
    n_per_user = np.bincount(sorted_users)[sorted_users]
    first = np.searchsorted(sorted_users, sorted_users)         # position of the user's first row
    position = np.arange(len(order)) - first
    n_cut = np.maximum(1, np.ceil(np.round(fraction * n_per_user, 9)).astype(int))
    n_cut = np.where(n_per_user - n_cut >= min_keep, n_cut, 0)
    mask = np.zeros(len(users), dtype=bool)
    mask[order] = position >= n_per_user - n_cut
    return mask


def _item_sort_keys(item_ids: np.ndarray) -> np.ndarray:
    """Rank of each item id: numeric order when every id is an integer, text order otherwise."""
    numeric = pd.to_numeric(pd.Series(item_ids), errors="coerce")
    if numeric.notna().all() and (numeric % 1 == 0).all():
        return np.argsort(np.argsort(numeric.to_numpy(), kind="stable"), kind="stable")
    return np.argsort(np.argsort(item_ids, kind="stable"), kind="stable")


def _pair_in(data: TrainData, other: TrainData) -> np.ndarray:
    keys = data.users.astype(np.int64) * data.n_items + data.items
    return np.isin(keys, other.users.astype(np.int64) * other.n_items + other.items)


def _subset(data: TrainData, mask: np.ndarray) -> TrainData:
    return replace(data, users=data.users[mask], items=data.items[mask],
                   timestamps=data.timestamps[mask])
