"""Candidate sources of the two-stage recommender: each turns a user's history into one or more
SIGNALS, a score for every catalogue item, computed a batch of users at a time.

Signals (the learned ranker sees each one's score and rank; ``NOMINATE`` says how many items the
nominating ones put into a user's candidate set):

- co-occurrence: ``ease`` (EASE over the whole history), ``ease_recent`` (the same item-item
  weights over the recency-weighted history: what the user is into lately);
- sequence: ``sequence``: items that followed the user's recent items in other people's
  histories (a few positions later), the cheap sequential signal;
- factors: ``factors``: a truncated SVD of the interaction matrix (PureSVD), the user folded in;
- looks: ``visual_max`` / ``visual_latest`` / ``visual_profile``: image cosine to the closest of
  the user's recent items, to the latest one, to the mean of the history;
- content: ``content`` (catalogue attributes: labels, title words, era — cosine to the user's
  recency-weighted attribute profile), ``content_cf`` (taste predicted from content: a ridge map
  from an item's attributes + image to its collaborative factors, so a cold item gets the factors
  its look-alikes have) and ``cold`` (``content_cf`` over items nobody has interacted with: the
  way new items get in);
- time: ``trend_week`` / ``trend_month`` / ``trend_year`` (positives up to the user's now, decayed
  with those half-lives), ``popularity`` (all positives), ``newness`` (minus the item's age in days
  at the user's now; unknown or not yet out: -inf).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import TrainData
from .history import History
from .models.ease import EASE

NOMINATE = {"ease": 100, "ease_recent": 50, "sequence": 40, "factors": 40, "visual_max": 20,
            "content": 20, "content_cf": 20, "cold": 20, "trend_week": 20, "trend_month": 20,
            "newness": 10, "popularity": 10}
VISUAL_DIM = 128          # image features are compared in their top principal components
CONTENT_DIM = 128         # attributes + image, reduced, as the input of the content → factors map
FACTORS = 64
SEQUENCE_WINDOW = 5       # "followed by": up to this many positions later, weighted 1 / distance
EASE_MAX_ITEMS = 20_000   # above this many warm items, co-occurrence is a sparse item kNN instead


def unit(matrix):
    if sp.issparse(matrix):
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
        return sp.diags(1.0 / np.where(norms > 0, norms, 1.0)).astype(np.float32) @ matrix
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def principal_rows(matrix, dim: int, seed: int, centre: bool = True) -> np.ndarray:
    """Rows projected on their top ``dim`` singular directions, unit length. Centred (dense image
    features): the component every CNN vector shares says little about taste and swamps plain
    cosines. Sparse attributes are not centred (that would densify them): latent semantic analysis."""
    from sklearn.utils.extmath import randomized_svd

    if centre:
        matrix = np.asarray(matrix, dtype=np.float32)
        matrix = matrix - matrix.mean(axis=0, keepdims=True)
    dim = min(dim, min(matrix.shape) - 1)
    if dim < 1:
        return unit(matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix, dtype=np.float32))
    u, s, _ = randomized_svd(matrix, dim, n_iter=2, random_state=seed)
    return unit(u * s)


class ItemSpace:
    """The catalogue's content, prepared once (it does not depend on interactions)."""

    def __init__(self, data: TrainData, seed: int = 0):
        self.visual = None if data.item_features is None else principal_rows(data.item_features, VISUAL_DIM, seed)
        attributes = data.item_attributes
        has_attributes = attributes is not None and attributes.shape[1] > 0
        self.attributes = unit(sp.csr_matrix(attributes, dtype=np.float32)) if has_attributes else None
        blocks = [b for b in (self.attributes, self.visual) if b is not None]
        self.content = None if not blocks else principal_rows(
            sp.hstack([sp.csr_matrix(b) for b in blocks], format="csr"), CONTENT_DIM, seed, centre=False)


class Sources:
    """Every signal, fitted on one TrainData (the tune data, or all of train)."""

    def __init__(self, data: TrainData, space: ItemSpace, seed: int = 0):
        self.history = h = History.of(data)
        self.space, self.cold = space, h.counts == 0
        self.ease = None
        if (~self.cold).sum() <= EASE_MAX_ITEMS:
            self.ease = EASE(max_items=EASE_MAX_ITEMS, single_precision=True).fit(data)
        else:
            from .models.itemknn import ItemKNN
            self.knn = ItemKNN(neighbours=200).fit(data)
        self.transitions = _transitions(data, h)
        self.item_factors, self.content_factors = _factors(h.seen, space.content, seed)

    def signals(self, users: np.ndarray) -> dict[str, np.ndarray]:
        """name → (len(users), n_items) float32 for one batch of users."""
        h, space = self.history, self.space
        seen, recency = h.seen[users], h.recency[users]
        out = {}
        if self.ease is not None:
            warm, weights = self.ease.warm, self.ease.weights
            out["ease"] = _scatter(seen[:, warm] @ weights, warm, h.n_items)
            out["ease_recent"] = _scatter(recency[:, warm] @ weights, warm, h.n_items)
        else:
            out["ease"] = _dense(seen @ self.knn.similarity_t)
            out["ease_recent"] = _dense(recency @ self.knn.similarity_t)
        out["sequence"] = _dense(recency @ self.transitions)
        user_factors = unit(np.asarray(recency @ self.item_factors))
        out["factors"] = user_factors @ self.item_factors.T
        if space.visual is not None:
            out.update(_visual(space.visual, h.recent[users], seen))
        if space.attributes is not None:
            profile = unit(recency @ space.attributes)
            out["content"] = _dense(profile @ space.attributes.T)
        if self.content_factors is not None:
            out["content_cf"] = user_factors @ self.content_factors.T
            out["cold"] = np.where(self.cold[None, :], out["content_cf"], -np.inf).astype(np.float32)
        for name, days in (("trend_week", 7), ("trend_month", 30), ("trend_year", 365)):
            out[name] = np.log1p(h.decayed_popularity(users, days))
        out["popularity"] = np.broadcast_to(np.log1p(h.counts), (len(users), h.n_items)).astype(np.float32)
        age = h.age_days(users)
        out["newness"] = np.where(age >= 0, -age, -np.inf).astype(np.float32)
        out["age_days"] = age.astype(np.float32)        # NaN (unknown date) kept: LightGBM routes it
        return out


def _dense(product) -> np.ndarray:
    return np.asarray(product.toarray() if sp.issparse(product) else product, dtype=np.float32)


def _scatter(block, columns: np.ndarray, n_items: int) -> np.ndarray:
    out = np.zeros((block.shape[0], n_items), dtype=np.float32)
    out[:, columns] = _dense(block)
    return out


def _visual(visual: np.ndarray, recent: np.ndarray, seen: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Image cosines of every item to the user's recent items (max, latest) and history mean."""
    has = recent >= 0
    # one product, C-ordered (b, recent, n): einsum returns a transposed view here, and the max
    # over its middle axis then reads memory out of order, ~14x slower than the product itself
    sims = (visual[np.maximum(recent, 0)].reshape(-1, visual.shape[1]) @ visual.T).reshape(*recent.shape, -1)
    sims[~has] = -np.inf
    best = sims.max(axis=1)
    latest = np.where(has[:, :1], sims[:, 0], 0.0)
    profile = unit(np.asarray(seen @ visual)) @ visual.T
    return {"visual_max": np.where(np.isfinite(best), best, 0.0).astype(np.float32),
            "visual_latest": latest.astype(np.float32), "visual_profile": profile.astype(np.float32)}


def _transitions(data: TrainData, history: History) -> sp.csr_matrix:
    """(n_items, n_items): how often j followed i within SEQUENCE_WINDOW positions of a user's
    history (weight 1 / distance), cosine-normalised by the items' counts."""
    rows, cols, vals = [], [], []
    for seq in data.sequences():
        for offset in range(1, min(SEQUENCE_WINDOW, len(seq) - 1) + 1):
            rows.append(seq[:-offset])
            cols.append(seq[offset:])
            vals.append(np.full(len(seq) - offset, 1.0 / offset, dtype=np.float32))
    n = data.n_items
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    counts = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    norm = 1.0 / np.sqrt(np.maximum(history.counts, 1.0))
    return (sp.diags(norm) @ counts @ sp.diags(norm)).astype(np.float32).tocsr()


def _factors(seen: sp.csr_matrix, content: np.ndarray | None, seed: int):
    """PureSVD item factors of the interaction matrix (columns scaled down by popularity, so the
    factors describe taste rather than fame), and the same factors predicted from content by
    ridge regression fitted on the warm items (None without content)."""
    n_users, n_items = seen.shape
    counts = np.asarray(seen.sum(axis=0)).ravel()
    scaled = seen @ sp.diags(1.0 / np.sqrt(np.maximum(counts, 1.0)))
    from sklearn.utils.extmath import randomized_svd

    k = max(1, min(FACTORS, min(n_users, n_items) - 1))
    _, s, vt = randomized_svd(scaled.astype(np.float32), k, n_iter=4, random_state=seed)
    items = (vt.T * np.sqrt(s)).astype(np.float32)
    if content is None:
        return items, None
    warm = counts > 0
    z = content[warm].astype(np.float64)
    ridge = 0.1 * np.trace(z.T @ z) / z.shape[1]
    weights = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ items[warm])
    return items, (content @ weights).astype(np.float32)
