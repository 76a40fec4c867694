"""The top neighbours of every catalogue item, precomputed: "similar to item X" becomes a row lookup.

Exact (blocked matrix products) up to ``EXACT_MAX_ITEMS`` items: quadratic, ~4 s per 10k items at
10k. Above that an inverted-file index (faiss ``IndexIVFFlat``, inner product, ~4·√n lists, 8 probed)
finds them: each item is compared with ~8/(4√n) of the catalogue, so the cost grows as n^1.5 instead
of n², and at 100k items the table takes about half a minute with ~99% of the exact neighbours.
Serving computes small tables itself at load time; the ``item_index`` asset stores large ones in the
snapshot (``ExactIndex.neighbours``), so a server starts in seconds whatever the catalogue's size,
and with them the inverted-file index itself (``ExactIndex.ivf``, float16 codes): serving answers the queries the
table cannot (a filter few neighbours pass, a picture) from it instead of scanning (``index.ann``).
"""
from __future__ import annotations

import numpy as np

from .ann import ANN_MIN_ITEMS, IVFIndex

EXACT_MAX_ITEMS = ANN_MIN_ITEMS
NEIGHBOURS = 400                   # per item, within the budget below
# rows (int32) + scores (float32): 400 neighbours up to 100k items. At 100k items a 100-wide table
# answered 1% of the requests filtered by an item's own rarer tag (a style worn by 1 item in 30;
# the rest went to the IVF at ~1.7 ms each), a 400-wide one 83% (as a row lookup, ~0.25 ms)
TABLE_BUDGET_BYTES = 320 * 2**20
BLOCK = 512
SEARCH_BLOCK = 8192
PROBES = 8


def table_size(n_items: int, neighbours: int = NEIGHBOURS, budget_bytes: int = TABLE_BUDGET_BYTES) -> int:
    """Neighbours per item: more means fewer filtered queries falling back to a scan (a random tag
    on a 10k synthetic catalogue: 88% with 100, 52% with 200, 16% with 400), within the budget, and
    never fewer than 100."""
    fits = budget_bytes // (8 * max(n_items, 1))
    return min(neighbours, max(n_items - 1, 0), max(fits, 100))


def prepare_snapshot(snapshot) -> None:
    """What an ``ExactIndex`` snapshot carries for serving: for catalogues too large for serving
    to compute the table at start, the table and the inverted-file index it was found with."""
    if len(snapshot) <= EXACT_MAX_ITEMS:
        snapshot.neighbours = snapshot.ivf = None
        return
    ivf = IVFIndex(snapshot.vectors)
    snapshot.neighbours = approximate_table(snapshot.vectors, table_size(len(snapshot)), ivf=ivf)
    snapshot.ivf = ivf.compact().to_bytes()      # the table's scores are exact; serving's reads halve


def neighbour_table(vectors: np.ndarray, m: int, exact_max_items: int = EXACT_MAX_ITEMS,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows (n, m) int32, scores (n, m) float32) of each unit row's m best others by inner
    product, best first; an approximate table may end a row with -1 / -inf where it found fewer."""
    if len(vectors) <= exact_max_items:
        return exact_table(vectors, m)
    return approximate_table(vectors, m, seed)


def exact_table(vectors: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    from .exact import top_k

    n = len(vectors)
    rows = np.empty((n, m), dtype=np.int32)
    scores = np.empty((n, m), dtype=np.float32)
    for start in range(0, n, BLOCK):
        block = vectors[start:start + BLOCK] @ vectors.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf  # not itself
        best = top_k(block, m)
        rows[start:start + len(block)] = best
        scores[start:start + len(block)] = np.take_along_axis(block, best, axis=1)
    return rows, scores


def approximate_table(vectors: np.ndarray, m: int, seed: int = 0,
                      ivf: IVFIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
    ivf = IVFIndex(vectors, seed=seed) if ivf is None else ivf
    n = ivf.n
    table_rows, table_scores = np.empty((n, m), dtype=np.int32), np.empty((n, m), dtype=np.float32)
    for start in range(0, n, SEARCH_BLOCK):   # blocks: faiss' int64 ids for all rows at once would
        stop = min(start + SEARCH_BLOCK, n)   # cost 3x the table in passing
        scores, rows = ivf.search_many(ivf.vectors[start:stop], m + 1, PROBES)
        itself = rows == np.arange(start, stop)[:, None]
        # drop each item itself (or, when it was not found, its weakest neighbour), keep the order
        drop = np.where(itself.any(axis=1), itself.argmax(axis=1), m)
        keep = np.ones_like(itself)
        keep[np.arange(stop - start), drop] = False
        rows, scores = rows[keep].reshape(-1, m), scores[keep].reshape(-1, m)
        scores[rows < 0] = -np.inf
        table_rows[start:stop], table_scores[start:stop] = rows, scores
    return table_rows, table_scores
