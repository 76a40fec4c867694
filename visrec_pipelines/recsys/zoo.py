"""Every ranker the platform trains, by name, and the one way they are trained.

The rankers are the classes registered in ``recsys.models`` (``@register``), listed by their
``order`` under their ``name``. ``names()`` is the default zoo, what the pipeline trains on every
run; ``available()`` adds the rankers registered with ``default=False`` (slow for what they give:
trainable by name, tested and benchmarked, not trained by default).

Training follows the protocol: hyper-parameters and early stopping see only the validation slice
(fit on ``tune_data``); a model that stopped early is then refit on all of train for the epochs it
chose, so the most recent interactions — the validation slice — are not thrown away. A ranker
without epochs but with a ``tuning`` grid (EASE's λ, ItemKNN's k) is fit on ``tune_data`` for each
candidate, and the best on the validation slice is refit on all of train. It is handed
``split.validation`` too: a model that learns from that slice (the two-stage ranker) uses exactly
the protocol's.

One time budget bounds a ranker's whole training (``budget_s``, ``RANKER_BUDGET_S`` = 5 min: the grid
and the refit together). Each training run of an epoch-trained model gets an even share of it (one
per grid candidate and one for the refit), and the grid stops early when the next candidate would
not fit in what is left (the best so far is kept, ``grid_cut`` says so). It is meant for large
shops: there it keeps every ranker's cost flat instead of ``len(grid) + 1`` ever longer runs. A
ranker whose single fit cannot be cut short and grows faster than the events (ItemKNN) sets
``grid_max_events``: above it the defaults are fitted once (``grid_skipped``).
"""
from __future__ import annotations

import importlib
import itertools
import pkgutil
import time
from dataclasses import dataclass, field

from . import models
from .base import Ranker
from .iterative import IterativeRanker, validation_metric
from .split import Split

RANKER_BUDGET_S = 300.0


def rankers() -> dict[str, type[Ranker]]:
    """Every registered ranker class by name, default or not, in listing order (imports each
    ranker module once)."""
    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"{models.__name__}.{module.name}")
    ordered = sorted(models.REGISTERED.items(), key=lambda item: (item[1][0], item[0]))
    return {name: cls for name, (_, cls) in ordered}


def names() -> list[str]:
    """The default zoo: the rankers the pipeline trains on every run."""
    return [name for name, cls in rankers().items() if getattr(cls, "default_zoo", True)]


def available() -> list[str]:
    """Every ranker that can be trained by name (the default zoo and the optional ones)."""
    return list(rankers())


@dataclass
class TrainedRanker:
    name: str
    ranker: Ranker
    train_seconds: float
    params: dict = field(default_factory=dict)


class _Budget:
    """The time left of a ranker's budget, shared out over its training runs."""

    def __init__(self, seconds: float | None, runs: int):
        self.seconds, self.runs, self.started = seconds, runs, time.monotonic()
        self.cut = False

    @property
    def share(self) -> float | None:
        return None if self.seconds is None else self.seconds / self.runs

    def spent(self) -> float:
        return time.monotonic() - self.started

    def affords_another(self, done: int) -> bool:
        """After ``done`` runs of the grid: does one more, at their mean cost, leave the refit its share?"""
        if self.seconds is None or done == 0:
            return True
        enough = self.spent() * (done + 1) / done <= self.seconds - self.share
        self.cut |= not enough
        return enough

    def left(self) -> float | None:
        return None if self.seconds is None else max(self.seconds - self.spent(), self.share)


def _grid(cls: type[Ranker], kwargs: dict, exclude: set) -> list[dict]:
    """The candidates of ``cls.tuning`` (settings the caller fixed are not searched), in order."""
    axes = {k: v for k, v in cls.tuning.items() if k not in exclude}
    return [{**kwargs, **dict(zip(axes, values))} for values in itertools.product(*axes.values())]


def _chosen(cls: type[Ranker], candidates: list[dict], split: Split, budget: _Budget) -> dict:
    """The candidate whose model, fit on ``tune_data``, has the best validation NDCG@20 (the only
    one when there is nothing to search)."""
    if len(candidates) == 1:
        return candidates[0]
    tune_data, scored = split.tune_data(), []
    for candidate in candidates:
        if not budget.affords_another(len(scored)):
            break
        model = cls(**candidate).fit(tune_data)
        scored.append((validation_metric(model, tune_data, split.validation), len(scored), candidate))
    return max(scored, key=lambda s: (s[0], -s[1]))[2]        # ties: the first listed


def _tuned(cls: type[IterativeRanker], candidates: list[dict], split: Split, budget: _Budget):
    """The candidate with the best validation NDCG@20, fitted on ``tune_data`` and early-stopped on
    the validation slice, each run within its share of the budget."""
    best_model, best_kwargs, best_score = None, candidates[0], -1.0
    for done, candidate in enumerate(candidates):
        if not budget.affords_another(done):
            break
        model = cls(**candidate)
        model.train_budget_s = budget.share
        model.fit(split.tune_data(), validation=split.validation)
        score = max((h[1] for h in model.history), default=0.0)
        if best_model is None or score > best_score:
            best_model, best_kwargs, best_score = model, candidate, score
    return best_model, best_kwargs


def train(name: str, split: Split, seed: int = 0, progress: bool = False, refit: bool = True,
          budget_s: float | None = RANKER_BUDGET_S, **params) -> TrainedRanker:
    """Train ``name`` under the protocol within ``budget_s`` seconds (None: no limit); ``params``
    fix settings (they are not searched)."""
    classes = rankers()
    if name not in classes:
        raise KeyError(f"unknown ranker {name!r}; known: {sorted(classes)}")
    cls = classes[name]
    missing = cls.missing_inputs(split.train)
    if missing:
        raise ValueError(f"{name} needs {'; '.join(missing)}")
    kwargs = {"seed": seed, **params}
    iterative = issubclass(cls, IterativeRanker)
    if iterative:
        kwargs["progress"] = progress
    candidates = _grid(cls, kwargs, exclude=set(params))
    grid_skipped = len(candidates) > 1 and cls.grid_max_events is not None \
        and len(split.train.users) > cls.grid_max_events
    if grid_skipped:
        candidates = [kwargs]
    budget = _Budget(budget_s, len(candidates) + 1)
    started = time.perf_counter()
    best = None
    if not iterative:                     # nothing to stop early: choose, fit on all of train
        kwargs = _chosen(cls, candidates, split, budget)
        ranker = cls(**kwargs).fit(split.train, split.validation)
    else:
        ranker, kwargs = _tuned(cls, candidates, split, budget)
        best = ranker.best_epoch
        if refit and best is not None:
            kwargs["epochs"] = int(best)
            tuned_stopped = ranker.stopped_by_budget
            ranker = cls(**kwargs)
            ranker.train_budget_s = budget.left()
            ranker.fit(split.train)
            ranker.stopped_by_budget |= tuned_stopped
        ranker.stopped_by_budget |= budget.cut
    seconds = time.perf_counter() - started
    return TrainedRanker(name, ranker, seconds, {k: v for k, v in kwargs.items() if k != "progress"}
                         | ({"best_epoch": int(best)} if best is not None else {})
                         | ({"grid_cut": True} if budget.cut else {})
                         | ({"grid_skipped": True} if grid_skipped else {}))
