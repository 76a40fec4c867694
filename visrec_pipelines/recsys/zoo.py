"""Every ranker the platform trains, by name, and the one way they are trained.

Training follows the protocol: hyper-parameters and early stopping see only the validation slice
(fit on ``tune_data``); a model that stopped early is then refit on all of train for the epochs it
chose, so the most recent interactions — the validation slice — are not thrown away.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable

from .base import Ranker
from .split import Split

FACTORIES: dict[str, Callable[..., Ranker]] = {}
NEEDS_IMAGE_FEATURES = {"visual_knn", "vbpr", "amr", "deep", "sequence", "visual_content"}
# Small grids searched on the validation slice (each candidate early-stopped there); the rest of a
# model's settings are its defaults. L2 strength matters most: sparse shops want far more of it.
TUNING: dict[str, dict[str, list]] = {
    "bpr": {"reg": [0.003, 0.01, 0.03]},
    "vbpr": {"reg": [0.01, 0.1]},
    "amr": {"reg": [0.01, 0.1]},
    "visual_content": {"weight_decay": [0.001, 0.003]},
}


def _register() -> None:
    from .models.bpr import BPR
    from .models.ease import EASE
    from .models.itemknn import ItemKNN
    from .models.mostpop import MostPop
    from .models.vbpr import VBPR
    from .models.visual_knn import VisualKNN
    from .models.deep import DeepRanker
    from .models.sequence import SequenceRanker
    from .models.visual_content import VisualContentRanker

    FACTORIES.update(mostpop=MostPop, itemknn=ItemKNN, ease=EASE, visual_knn=VisualKNN, bpr=BPR, vbpr=VBPR,
                     deep=DeepRanker, sequence=SequenceRanker, visual_content=VisualContentRanker)
    try:
        from .models.amr import AMR
        FACTORIES["amr"] = AMR
    except ImportError:
        pass


def names() -> list[str]:
    if not FACTORIES:
        _register()
    return list(FACTORIES)


@dataclass
class TrainedRanker:
    name: str
    ranker: Ranker
    train_seconds: float
    params: dict = field(default_factory=dict)


def _tuned(factory, kwargs: dict, split: Split, grid: dict, exclude: set):
    """The candidate of ``grid`` (settings the caller fixed are not searched) with the best
    validation NDCG@20, fitted on ``tune_data`` and early-stopped on the validation slice."""
    axes = {k: v for k, v in grid.items() if k not in exclude}
    best_model, best_kwargs, best_score = None, kwargs, -1.0
    for values in itertools.product(*axes.values()) if axes else [()]:
        candidate = {**kwargs, **dict(zip(axes, values))}
        model = factory(**candidate).fit(split.tune_data(), validation=split.validation)
        history = getattr(model, "history", None) or []
        score = max((h[1] for h in history), default=0.0)
        if best_model is None or score > best_score:
            best_model, best_kwargs, best_score = model, candidate, score
    return best_model, best_kwargs


def train(name: str, split: Split, seed: int = 0, progress: bool = False, refit: bool = True,
          **params) -> TrainedRanker:
    names()
    if name not in FACTORIES:
        raise KeyError(f"unknown ranker {name!r}; known: {sorted(FACTORIES)}")
    if name in NEEDS_IMAGE_FEATURES and split.train.item_features is None:
        raise ValueError(f"{name} needs image features: attach them with split.with_item_features()")
    factory = FACTORIES[name]
    kwargs = {"seed": seed, **params}
    if "progress" in factory.__init__.__code__.co_varnames:
        kwargs["progress"] = progress
    started = time.perf_counter()
    model, best = factory(**kwargs), None
    if not hasattr(model, "epochs"):        # nothing to stop early: fit once on all of train
        ranker = model.fit(split.train)
    else:
        ranker, kwargs = _tuned(factory, kwargs, split, TUNING.get(name, {}), exclude=set(params))
        best = getattr(ranker, "best_epoch", None)
        if refit and best is not None:
            kwargs["epochs"] = int(best)
            ranker = factory(**kwargs).fit(split.train)
    seconds = time.perf_counter() - started
    return TrainedRanker(name, ranker, seconds, {k: v for k, v in kwargs.items() if k != "progress"}
                         | ({"best_epoch": int(best)} if best is not None else {}))
