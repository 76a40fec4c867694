"""Shared pieces of the pairwise (BPR-style) rankers: vectorised (u, i, j) sampling, early stopping
on the validation slice, and a scoped torch thread count.

A whole epoch of triples is drawn with a handful of numpy calls: positives (u, i) uniformly with
replacement (as Cornac's BPR does), negatives j from a pool, and the few j that hit one of the
user's positives are redrawn together until none is left. Membership is a lookup in a dense
user × item bitmap when that fits in ``BITMAP_LIMIT`` bytes, else a binary search over sorted keys.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace

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


class EarlyStopping:
    """Tracks a validation metric every few epochs and keeps a copy of the best parameters."""

    def __init__(self, patience: int | None):
        self.patience, self.best, self.best_epoch, self.best_state, self.bad = patience, -np.inf, 0, None, 0
        self.history: list[tuple[int, float]] = []

    def update(self, epoch: int, value: float, state) -> bool:
        """Record ``value``; True when training should stop."""
        self.history.append((epoch, float(value)))
        if value > self.best:
            self.best, self.best_epoch, self.best_state, self.bad = value, epoch, copy.deepcopy(state), 0
        else:
            self.bad += 1
        return self.patience is not None and self.bad >= self.patience


def validation_metric(ranker, train: TrainData, validation: TrainData, metric: str = "ndcg@20") -> float:
    """``metric`` of ``ranker`` ranking ``validation`` positives, ``train`` positives excluded."""
    from ..metrics import evaluate  # local import: metrics is only needed when validating
    return evaluate(ranker, SimpleNamespace(train=train, test=validation), with_auc=False)[metric]


@contextmanager
def torch_threads(n: int | None):
    """Run torch ops on ``n`` threads inside the block, then restore the process-wide setting.
    One thread is the robust choice on a shared 2-core machine: a second OpenMP thread that has to
    wait for a busy core makes every op slower, not faster."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n or previous)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit_with_early_stopping(model, data: TrainData, validation: TrainData | None, max_epochs: int) -> None:
    """Call ``model._train(on, stop_on, epochs) -> epochs worth keeping`` under either convention.

    ``validation`` held out of ``data`` (``Split.for_tuning()``): stop on it directly. Carved from
    ``data`` (``Split.validation`` ⊂ ``Split.train``): choose the epochs on the rest, then train
    again on all of ``data`` for that many, so no positive is wasted. Sets ``model.best_epoch``."""
    if validation is None or len(validation.users) == 0:
        model.best_epoch = model._train(data, None, max_epochs)
        return
    keys = data.users.astype(np.int64) * data.n_items + data.items
    held = np.isin(keys, validation.users.astype(np.int64) * data.n_items + validation.items)
    if not held.any():
        model.best_epoch = model._train(data, validation, max_epochs)
        return
    rest = replace(data, users=data.users[~held], items=data.items[~held], timestamps=data.timestamps[~held])
    epochs = model._train(rest, validation, max_epochs)
    history = model.history
    model._train(data, None, epochs)
    model.best_epoch, model.history = epochs, history
