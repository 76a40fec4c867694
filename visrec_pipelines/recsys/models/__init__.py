"""One module per ranker, all obeying ``visrec_pipelines.recsys.base.Ranker``.

A ranker module registers its class with ``@register(order=...)``; ``recsys.zoo`` imports every
module of this package and lists the registered classes by ``order``. So adding a ranker is adding
a module here (and its test): the zoo, the pipeline's assets, the tests and the benchmark find it.
``default=False`` keeps a ranker available (trainable by name, tested, benchmarked) but out of the
default zoo the pipeline trains every run: for models whose cost their accuracy does not repay.
"""
from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", bound=type)

# name → (order, class); filled as the ranker modules are imported
REGISTERED: dict[str, tuple[int, type]] = {}


def register(order: int, default: bool = True):
    """Class decorator: list the ranker under its ``name``. ``order`` places it in ``zoo.names()``
    (the order assets, tables and tests list rankers in); steps of 10 leave room between.
    ``default``: part of the default zoo (``zoo.names()``), else only available (``zoo.available()``)."""

    def add(cls: T) -> T:
        cls.default_zoo = default
        known = REGISTERED.get(cls.name)
        if known and _path(known[1]) != _path(cls):     # the same class re-imported is no clash
            raise ValueError(f"two rankers named {cls.name!r}: {_path(known[1])} and {_path(cls)}")
        REGISTERED[cls.name] = (order, cls)
        return cls

    return add


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
