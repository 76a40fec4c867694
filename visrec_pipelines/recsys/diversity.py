"""Re-ranking for variety: maximal marginal relevance (Carbonell & Goldstein 1998) over image
embeddings, so a list is not twenty near-identical pictures.

Serving calls ``diversify`` on a ranker's top candidates (e.g. the best 100) for ``?diversity=``:
each next item maximises (1 - diversity) · relevance - diversity · (its highest cosine to the items
already chosen), relevance being the scores min-max scaled to [0, 1] over the candidates, so the
weight means the same for every ranker whatever its score scale. ``diversity`` 0 keeps the ranker's
order exactly; 1 ignores relevance after the first pick (the best item always comes first).
"""
from __future__ import annotations

import numpy as np


def diversify(candidates, scores, vectors, k: int = 20, diversity: float = 0.3) -> np.ndarray:
    """The ``k`` candidates chosen by MMR, in the order chosen.

    candidates: (n,) item ids or indices; scores: (n,) the ranker's scores (higher is better);
    vectors: (n, d) the candidates' image embeddings, row-aligned (normalised here; a zero row is a
    candidate without an image: it is similar to nothing); diversity: the weight in [0, 1]."""
    candidates = np.asarray(candidates)
    scores = np.asarray(scores, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float64)
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be in [0, 1], got {diversity}")
    if not len(candidates) == len(scores) == len(vectors):
        raise ValueError(f"{len(candidates)} candidates, {len(scores)} scores, {len(vectors)} vectors: "
                         "they must be aligned")
    k = min(k, len(candidates))
    order = np.argsort(-scores, kind="stable")                  # ties: the earlier candidate first
    if k == 0 or diversity == 0.0:
        return candidates[order[:k]]
    finite = np.isfinite(scores)
    low, high = (scores[finite].min(), scores[finite].max()) if finite.any() else (0.0, 0.0)
    relevance = np.where(finite, (scores - low) / (high - low) if high > low else 1.0, 0.0)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    chosen = [order[0]]
    closest = unit @ unit[order[0]]                              # highest cosine to the chosen so far
    available = np.ones(len(candidates), dtype=bool)
    available[order[0]] = False
    for _ in range(k - 1):
        value = (1.0 - diversity) * relevance - diversity * closest
        value[~available] = -np.inf
        pick = int(order[np.argmax(value[order])])               # ties: the better-ranked candidate
        chosen.append(pick)
        available[pick] = False
        closest = np.maximum(closest, unit @ unit[pick])
    return candidates[np.array(chosen)]
