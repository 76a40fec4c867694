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


def _chosen(cls: type[Ranker], kwargs: dict, split: Split, exclude: set) -> dict:
    """The settings of ``cls.tuning`` (those the caller fixed are not searched) whose model, fit
    on ``tune_data``, has the best validation NDCG@20; ``kwargs`` when there is nothing to search."""
    axes = {k: v for k, v in cls.tuning.items() if k not in exclude}
    if not axes:
        return kwargs
    tune_data, scored = split.tune_data(), []
    for values in itertools.product(*axes.values()):
        candidate = {**kwargs, **dict(zip(axes, values))}
        model = cls(**candidate).fit(tune_data)
        scored.append((validation_metric(model, tune_data, split.validation), len(scored), candidate))
    return max(scored, key=lambda s: (s[0], -s[1]))[2]        # ties: the first listed


def _tuned(cls: type[IterativeRanker], kwargs: dict, split: Split, exclude: set):
    """The candidate of ``cls.tuning`` (settings the caller fixed are not searched) with the best
    validation NDCG@20, fitted on ``tune_data`` and early-stopped on the validation slice."""
    axes = {k: v for k, v in cls.tuning.items() if k not in exclude}
    best_model, best_kwargs, best_score = None, kwargs, -1.0
    for values in itertools.product(*axes.values()) if axes else [()]:
        candidate = {**kwargs, **dict(zip(axes, values))}
        model = cls(**candidate).fit(split.tune_data(), validation=split.validation)
        score = max((h[1] for h in model.history), default=0.0)
        if best_model is None or score > best_score:
            best_model, best_kwargs, best_score = model, candidate, score
    return best_model, best_kwargs


def train(name: str, split: Split, seed: int = 0, progress: bool = False, refit: bool = True,
          **params) -> TrainedRanker:
    classes = rankers()
    if name not in classes:
        raise KeyError(f"unknown ranker {name!r}; known: {sorted(classes)}")
    cls = classes[name]
    missing = cls.missing_inputs(split.train)
    if missing:
        raise ValueError(f"{name} needs {'; '.join(missing)}")
    kwargs = {"seed": seed, **params}
    started = time.perf_counter()
    best = None
    if not issubclass(cls, IterativeRanker):     # nothing to stop early: choose, fit on all of train
        kwargs = _chosen(cls, kwargs, split, exclude=set(params))
        ranker = cls(**kwargs).fit(split.train, split.validation)
    else:
        kwargs["progress"] = progress
        ranker, kwargs = _tuned(cls, kwargs, split, exclude=set(params))
        best = ranker.best_epoch
        if refit and best is not None:
            kwargs["epochs"] = int(best)
            ranker = cls(**kwargs).fit(split.train)
    seconds = time.perf_counter() - started
    return TrainedRanker(name, ranker, seconds, {k: v for k, v in kwargs.items() if k != "progress"}
                         | ({"best_epoch": int(best)} if best is not None else {}))
