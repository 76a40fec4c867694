"""The training loop shared by every ranker trained epoch by epoch (BPR, VBPR, AMR, the deep models).

A model implements the steps; ``IterativeRanker.fit`` runs them:

- ``begin(data, epochs, rng)``: fresh parameters and what training on ``data`` needs (sampler,
  optimiser, ...), returned as a run state handed to the other steps; sets ``seen``;
- ``train_epoch(run, epoch)``: one pass over the data (several lockstep members are still one);
- ``snapshot(run)`` / ``restore(run, state)``: the parameters as they are now, and back to them;
- ``export(run)``: make ``score`` reflect the current parameters (tables for scoring, numpy copies).

The base owns the rest: seeding (a numpy generator per run, torch seeded, its RNG and settings
restored afterwards), the torch thread count, the epochs behind a tqdm bar, early stopping on a
validation slice (every ``eval_every`` epochs; ``patience`` evaluations without improvement stop it,
the best state is kept), ``history`` / ``best_epoch``, and the two validation conventions of
``fit``. Each run trains from scratch, so the same seed gives the same model.

A time budget bounds each training run (``train_budget_s``, ``TRAIN_BUDGET_S`` = 10 min; the zoo
sets it from the ranker's whole budget, see ``recsys.zoo``): on a shop
large enough that epochs take minutes, training stops after the epoch that spends it (the best state
seen so far is kept, ``stopped_by_budget`` says so). Below that size it never binds, so results stay
reproducible; above it, a ranker's cost stays bounded instead of growing with the shop.
"""
from __future__ import annotations

import copy
import time
from abc import abstractmethod
from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm import tqdm

from .base import Ranker, TrainData
from .metrics import evaluate

TRAIN_BUDGET_S = 600.0
# Early stopping and grids score the validation slice often: above this many users, a fixed sample
# (NDCG@20's standard error there is ~0.004, below the gains a grid or an epoch is chosen by).
MAX_VALIDATION_USERS = 5_000


class IterativeRanker(Ranker):
    # (``tuning``: each candidate of the grid is early-stopped on the validation slice)
    # torch's deterministic kernels while training (see reproducible_torch)
    deterministic_kernels: ClassVar[bool] = True

    def __init__(self, epochs: int, eval_every: int, patience: int | None, threads: int | None = 1,
                 progress: bool = False, seed: int = 0):
        super().__init__(seed)
        self.epochs, self.eval_every, self.patience = epochs, eval_every, patience
        self.threads, self.progress = threads, progress   # threads None: leave torch's setting
        self.history: list[tuple[int, float]] = []        # (epoch, validation NDCG@20)
        self.best_epoch: int | None = None
        self.train_budget_s: float | None = TRAIN_BUDGET_S  # per training run; None: no limit
        self.stopped_by_budget = False

    @abstractmethod
    def begin(self, data: TrainData, epochs: int, rng: np.random.Generator) -> Any:
        """Fresh parameters for ``data``; the run state. ``epochs``: the most this run trains;
        ``rng``: its numpy generator (torch's global one is seeded with ``seed`` as well)."""

    @abstractmethod
    def train_epoch(self, run: Any, epoch: int) -> None:
        """Train one epoch (``epoch`` counts from 1)."""

    @abstractmethod
    def snapshot(self, run: Any) -> Any:
        """The parameters as they are now (the caller keeps a deep copy)."""

    @abstractmethod
    def restore(self, run: Any, state: Any) -> None:
        """Put back the parameters of a ``snapshot``; ``export`` follows."""

    def export(self, run: Any) -> None:
        """Make ``score`` reflect the current parameters (nothing to do if it reads them directly)."""

    def fit(self, data: TrainData, validation: TrainData | None = None) -> IterativeRanker:
        """``validation`` held out of ``data`` (``Split.for_tuning()``): stop on it directly. Carved
        from ``data`` (``Split.validation`` ⊂ ``Split.train``): choose the epochs on the rest, then
        train again on all of ``data`` for that many, so no positive is wasted."""
        with reproducible_torch(self.seed, self.threads, self.deterministic_kernels):
            held = np.zeros(0, dtype=bool) if validation is None else _pairs_in(data, validation)
            if not held.any():
                stop_on = validation if validation is not None and len(validation.users) else None
                self.best_epoch, self.history = self._train(data, stop_on, self.epochs)
            else:
                rest = replace(data, users=data.users[~held], items=data.items[~held],
                               timestamps=data.timestamps[~held])
                epochs, history = self._train(rest, validation, self.epochs)
                self._train(data, None, epochs)
                self.best_epoch, self.history = epochs, history
        return self

    def _train(self, data: TrainData, validation: TrainData | None, epochs: int) -> tuple[int, list]:
        """Train from scratch for up to ``epochs``: (epochs worth keeping, validation history)."""
        torch.manual_seed(self.seed)                    # init and dropout: the same draws each run
        run = self.begin(data, epochs, np.random.default_rng(self.seed))
        stopper = EarlyStopping(self.patience)
        budget = getattr(self, "train_budget_s", TRAIN_BUDGET_S)       # (models pickled before it existed)
        deadline = time.monotonic() + budget if budget is not None else np.inf
        epoch = 0
        for epoch in tqdm(range(1, epochs + 1), desc=self.name, disable=not self.progress):
            self.train_epoch(run, epoch)
            if validation is not None and epoch % self.eval_every == 0:
                self.export(run)
                if stopper.update(epoch, validation_metric(self, data, validation), self.snapshot(run)):
                    break
            if time.monotonic() > deadline:
                self.stopped_by_budget = True
                break
        if stopper.best_state is not None:
            self.restore(run, stopper.best_state)
        self.export(run)
        return stopper.best_epoch or epoch, stopper.history


class NetRanker(IterativeRanker):
    """An iterative ranker whose parameters are one torch module, ``self.net``."""

    def snapshot(self, run: Any) -> dict:
        return self.net.state_dict()

    def restore(self, run: Any, state: dict) -> None:
        self.net.load_state_dict(state)


class TableScores:
    """``score`` as the inner product of the user and item tables ``export`` leaves in ``_users``
    and ``_items``, which are also the vectors a vector index serves."""

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._users[np.atleast_1d(users)] @ self._items.T

    def user_vectors(self) -> np.ndarray:
        return self._users

    def item_vectors(self) -> np.ndarray:
        return self._items


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


def validation_metric(ranker: Ranker, train: TrainData, validation: TrainData, metric: str = "ndcg@20") -> float:
    """``metric`` of ``ranker`` ranking ``validation`` positives, ``train`` positives excluded; over
    at most ``MAX_VALIDATION_USERS`` of them (a fixed sample: every epoch and candidate sees the same
    users), as early stopping asks for it every few epochs."""
    return evaluate(ranker, SimpleNamespace(train=train, test=validation), with_auc=False,
                    max_users=MAX_VALIDATION_USERS)[metric]


@contextmanager
def torch_threads(n: int | None):
    """Run torch ops on ``n`` threads inside the block, then restore the process-wide setting.
    One thread is the robust choice on a shared 2-core machine: a second OpenMP thread that has to
    wait for a busy core makes every op slower, not faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n or previous)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def reproducible_torch(seed: int, threads: int | None, deterministic: bool = True):
    """Torch seeded and on ``threads`` threads inside the block, and (``deterministic``) with
    deterministic kernels: threaded scatter-adds would otherwise differ in the last bit between runs.
    The caller's global RNG and settings are restored afterwards."""
    previous = torch.are_deterministic_algorithms_enabled()
    with torch_threads(threads), torch.random.fork_rng():
        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def _pairs_in(data: TrainData, other: TrainData) -> np.ndarray:
    """Mask of ``data``'s (user, item) pairs that ``other`` holds too."""
    keys = data.users.astype(np.int64) * data.n_items + data.items
    return np.isin(keys, other.users.astype(np.int64) * data.n_items + other.items)
