"""Why an item is shown: said in words a shopper understands, with the evidence behind them.

Known users: the item from their history it looks most like (cosine of the image vectors) and the
tags it shares with what they liked. Cold start: it is popular in its category. Similar items: the
tags shared with the item asked about.
"""
from collections import Counter

import numpy as np

MAX_SHARED = 3
LOOKS_LIKE_MIN = 0.5  # below this cosine "looks like" would not be believable; tags alone speak then


def history_tag_ranks(tag_lists) -> dict[str, int]:
    """tag -> its rank among the history's tags (0 = on the most history items; ties by name)."""
    counts = Counter(tag for tags in tag_lists for tag in set(tags))
    return {tag: rank for rank, (tag, _) in enumerate(sorted(counts.items(), key=lambda tc: (-tc[1], tc[0])))}


def shared_tags(item_tags, history_ranks: dict[str, int]) -> list[str]:
    """The item's tags found in the history, the most frequent there first (per request, so the
    key is a C-level lookup, not a lambda: this runs for every recommended item)."""
    shared = [t for t in item_tags if t in history_ranks]
    if len(shared) > 1:
        shared.sort(key=history_ranks.__getitem__)
    return shared[:MAX_SHARED]


def looks_like(rec_vectors: np.ndarray, history_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each recommended item: (position in the history of the most similar item, its cosine)."""
    if len(rec_vectors) == 0 or len(history_vectors) == 0:
        return np.full(len(rec_vectors), -1), np.zeros(len(rec_vectors), np.float32)
    similarity = rec_vectors @ history_vectors.T
    best = similarity.argmax(axis=1)
    return best, similarity[np.arange(len(best)), best]


# the two-stage ranker's candidate sources, in a shopper's words
SOURCE_WORDS = {"ease": "often liked together with your items", "ease_recent": "goes with what you liked lately",
                "sequence": "often comes next after your recent picks", "factors": "fits your taste profile",
                "visual_max": "looks like your recent picks", "content": "shares labels and words with your history",
                "content_cf": "its kind suits your taste", "cold": "new, and its kind suits your taste",
                "trend_week": "popular this week", "trend_month": "popular this month", "newness": "a new arrival",
                "popularity": "popular"}


def known_user_reason(similar_title: str | None, similarity: float, shared: list[str], ranker: str,
                      sources: dict[str, int] | None = None) -> str:
    """``sources``: the candidate sources that found the item ({name: rank there}), best first."""
    parts = []
    if similar_title is not None and similarity >= LOOKS_LIKE_MIN:
        parts.append(f"looks like “{similar_title}” you liked")
    if shared:
        parts.append(f"shares {', '.join(shared)} with your history")
    if sources:
        words = [SOURCE_WORDS.get(name, name) for name in sorted(sources, key=sources.__getitem__)]
        parts.append(", ".join(dict.fromkeys(words[:2])))
    return "; ".join(parts) if parts else f"picked for you by the {ranker} ranker"


def cold_start_reason(category: str | None, position_in_category: int) -> str:
    where = f" in {category}" if category else ""
    return f"popular{where}" if position_in_category == 0 else f"also popular{where}"


def similar_reason(shared: list[str], similarity: float) -> str:
    if shared:
        return f"looks alike ({similarity:.2f}); both {', '.join(shared)}"
    return f"looks alike ({similarity:.2f})"


def diverse_popular_order(popularity: np.ndarray, categories: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rows by popularity, interleaved round-robin across categories (the most popular category
    first), so a cold-start page is not ten items of one kind. Returns (rows, rank within category)."""
    order = np.argsort(-popularity, kind="stable")
    queues: dict[str, list[int]] = {}
    for row in order.tolist():
        queues.setdefault(categories[row] or "", []).append(row)
    rows, ranks, depth = [], [], 0
    lanes = list(queues.values())   # dict order = first appearance = category of the most popular item
    while lanes:
        still = []
        for lane in lanes:
            if depth < len(lane):
                rows.append(lane[depth])
                ranks.append(depth)
                still.append(lane)
        lanes, depth = still, depth + 1
    return np.asarray(rows, dtype=np.intp), np.asarray(ranks, dtype=np.intp)
