"""The champion ranker, loaded from the MLflow registry and checked before it may serve.

Scoring one user is the hot path. Factorised rankers (score = user_vectors @ item_vectors.T) score
with one small matrix-vector product on arrays taken out of the model once at load; the others go
through ``ranker.score`` for that one user. A large catalogue's factorised champion also gets an
inverted-file index over the items that may be shown (``best_items_index``): a user's best items
are then a search of a few lists, not a product with every item.
"""
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..index.ann import IVFIndex
from ..recsys.bundle import RankerBundle


class ChampionLoadError(RuntimeError):
    """A registered version that cannot serve: unloadable artifact or failed smoke test."""


@dataclass
class Champion:
    bundle: RankerBundle
    version: str
    ranker_name: str
    loaded_at: float

    def __post_init__(self):
        ranker = self.bundle.ranker
        users, items = ranker.user_vectors(), ranker.item_vectors()
        self.user_vectors = self.item_vectors = None
        if users is not None and items is not None:
            self.user_vectors = np.ascontiguousarray(users, dtype=np.float32)
            self.item_vectors = np.ascontiguousarray(items, dtype=np.float32)
        self.seen = getattr(ranker, "seen", None)
        self.popularity = np.asarray(self.bundle.popularity, dtype=np.float32)
        self.n_items = len(self.bundle.item_ids)
        self.n_users = len(self.bundle.user_ids)

    def user_row(self, user_id: str) -> int | None:
        return self.bundle.user_index(user_id)

    def scores(self, user_row: int, items: np.ndarray | None = None) -> np.ndarray:
        """A fresh float32 vector of this user's scores over the champion's items (or those rows)."""
        if self.user_vectors is not None:
            vectors = self.item_vectors if items is None else np.take(self.item_vectors, items, axis=0)
            return vectors @ self.user_vectors[user_row]
        scores = self.scores_many(np.asarray([user_row]))[0]
        return scores.copy() if items is None else scores[items]

    def scores_many(self, user_rows: np.ndarray) -> np.ndarray:
        """(len(user_rows), n_items) float32 scores, the users scored together (a ranker without
        vectors builds their features in batches: cheaper per user than one by one)."""
        return np.asarray(self.bundle.ranker.score(np.asarray(user_rows)), dtype=np.float32)

    def best_items_index(self, shown: np.ndarray, k: int, min_items: int, seed: int = 0) -> IVFIndex | None:
        """An IVF over the item vectors of the champion rows ``shown`` (mask), its probes tuned on
        a sample of users to recall the exact top ``k``; None for a catalogue of ``min_items`` or
        fewer, or a champion without vectors (those score every item)."""
        if self.user_vectors is None or self.n_items <= min_items or not shown.any():
            return None
        rows = np.flatnonzero(shown)
        index = IVFIndex(self.item_vectors[rows], ids=rows, seed=seed)
        index.tune_on(self.user_vectors, k, seed)
        return index

    def seen_items(self, user_row: int) -> np.ndarray:
        if self.seen is None:
            return np.empty(0, dtype=np.intp)
        return self.seen.indices[self.seen.indptr[user_row]:self.seen.indptr[user_row + 1]]

    def check(self) -> None:
        """Smoke test before serving: sizes agree and a known user gets finite scores."""
        if self.n_items == 0 or self.n_users == 0:
            raise ChampionLoadError(f"version {self.version} has {self.n_users} users and {self.n_items} items")
        if len(self.popularity) != self.n_items:
            raise ChampionLoadError(f"version {self.version}: popularity has {len(self.popularity)} "
                                    f"entries for {self.n_items} items")
        for row in {0, self.n_users - 1}:
            scores = self.scores(row)
            if scores.shape != (self.n_items,):
                raise ChampionLoadError(f"version {self.version} scores {scores.shape} for {self.n_items} items")
            if not np.isfinite(scores).any():
                raise ChampionLoadError(f"version {self.version} gives no finite score to user {row}")


def load_champion(version: str, load_bundle: Callable[[str], object], model_name: str) -> Champion:
    """Load a registered version (``load_bundle``: version -> RankerBundle, normally
    ``Registry.load_bundle``) and smoke-test it; raises ChampionLoadError with the cause."""
    try:
        bundle = load_bundle(version)
    except Exception as exc:  # unpickling garbage can raise anything
        raise ChampionLoadError(f"version {version} of {model_name} cannot be loaded: "
                                f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(bundle, RankerBundle):
        raise ChampionLoadError(f"version {version} holds a {type(bundle).__name__}, not a RankerBundle")
    try:
        champion = Champion(bundle, str(version), getattr(bundle.ranker, "name", type(bundle.ranker).__name__),
                            time.time())
        champion.check()
    except ChampionLoadError:
        raise
    except Exception as exc:
        raise ChampionLoadError(f"version {version} fails its smoke test: {type(exc).__name__}: {exc}") from exc
    return champion
