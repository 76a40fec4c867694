"""What the two-stage recommender knows about each user and item from one ``TrainData``: who saw
what (all of it, and weighted towards the most recent), each user's "now", and item time lines.

A user's "now" is their latest positive: the moment a recommendation for them is asked, both when
the learned ranker is trained (validation positives follow the tune data) and when it serves
(test positives, or tomorrow's visit, follow all of train). Time-aware signals are computed at
that moment, so a user who was active in 1999 is matched against what was new and popular in 1999.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .base import TrainData

DAY = 86400.0
RECENT = 10              # the most recent positives kept per user (visual/sequence look-alikes)
RECENCY_HALF_LIFE = 10   # positions back at which a positive weighs half in the recency profile


@dataclass
class History:
    seen: sp.csr_matrix          # (n_users, n_items) binary train positives
    recency: sp.csr_matrix       # same pattern, weight 0.5 ** (positions back / RECENCY_HALF_LIFE)
    recent: np.ndarray           # (n_users, RECENT) latest positives, most recent first, -1 padded
    now: np.ndarray              # (n_users,) unix seconds: the user's latest positive
    counts: np.ndarray           # (n_items,) train positives per item
    first_seen: np.ndarray       # (n_items,) first positive's time, NaN for an item never seen
    available: np.ndarray        # (n_items,) catalogue date, else first_seen, else NaN
    day_counts: sp.csr_matrix    # (n_items, n_days) positives per item per day since ``first_day``
    first_day: int
    span_days: np.ndarray        # (n_users,) log1p(days from the user's first positive to now)
    typical_age_days: np.ndarray  # (n_users,) median log1p(item age in days when they picked it)

    @classmethod
    def of(cls, data: TrainData) -> History:
        n_users, n_items = data.n_users, data.n_items
        order = np.lexsort((data.items, data.timestamps, data.users))
        users, items, times = data.users[order], data.items[order], data.timestamps[order]
        bounds = np.searchsorted(users, np.arange(n_users + 1))
        steps_back = (bounds[users + 1] - 1) - np.arange(len(users))         # 0 = the latest
        seen = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(n_users, n_items))
        weights = (0.5 ** (steps_back / RECENCY_HALF_LIFE)).astype(np.float32)
        recency = sp.csr_matrix((weights, (users, items)), shape=(n_users, n_items))
        recent = np.full((n_users, RECENT), -1, dtype=np.int64)
        keep = steps_back < RECENT
        recent[users[keep], steps_back[keep]] = items[keep]
        latest = times.max() if len(times) else 0.0
        now = np.full(n_users, latest)
        has = np.diff(bounds) > 0
        now[has] = times[bounds[1:][has] - 1]
        first_seen = np.full(n_items, np.inf)
        np.minimum.at(first_seen, items, times)
        first_seen[np.isinf(first_seen)] = np.nan
        catalogue = (np.full(n_items, np.nan) if data.item_available is None
                     else np.asarray(data.item_available, dtype=float))
        available = np.where(np.isfinite(catalogue), catalogue, first_seen)
        days = np.floor(times / DAY).astype(np.int64)
        first_day = int(days.min()) if len(days) else 0
        n_days = int(days.max()) - first_day + 1 if len(days) else 1
        day_counts = sp.csr_matrix((np.ones(len(days), np.float32), (items, days - first_day)),
                                   shape=(n_items, n_days))
        first = np.full(n_users, np.nan)
        first[has] = times[bounds[:-1][has]]
        picked_age = np.log1p(np.maximum((times - available[items]) / DAY, 0.0))
        typical = np.full(n_users, np.nan)
        for u in np.flatnonzero(has):              # medians per user: a loop over users, not rows
            ages = picked_age[bounds[u]:bounds[u + 1]]
            ages = ages[np.isfinite(ages)]
            typical[u] = np.median(ages) if len(ages) else np.nan
        return cls(seen, recency, recent, now, np.bincount(items, minlength=n_items).astype(np.float32),
                   first_seen, available, day_counts, first_day,
                   np.log1p(np.nan_to_num((now - first) / DAY, nan=0.0)).astype(np.float32), typical)

    @property
    def n_items(self) -> int:
        return self.seen.shape[1]

    def decayed_popularity(self, users: np.ndarray, half_life_days: float) -> np.ndarray:
        """(len(users), n_items): each item's positives up to the user's now, weighing
        0.5 ** (days before now / half life) — what was popular at the user's own time."""
        day_now = self.now[users] / DAY - self.first_day                       # fractional day index
        days = np.arange(self.day_counts.shape[1]) + 0.5
        ago = day_now[:, None] - days[None, :]
        kernel = np.where(ago >= -0.5, 0.5 ** (np.maximum(ago, 0.0) / half_life_days), 0.0)
        return np.asarray((self.day_counts @ kernel.T.astype(np.float32)).T, dtype=np.float32)

    def age_days(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Item age at the user's now in days (negative: not yet out; NaN: unknown). ``items``
        None: every item, (len(users), n_items); else aligned with ``users``."""
        if items is None:
            return (self.now[users][:, None] - self.available[None, :]) / DAY
        return (self.now[users] - self.available[items]) / DAY
