"""Visual neighbours for serving: the exact in-memory index plus a precomputed neighbour table.

One exact query scans the whole matrix: 2.7 ms at 10k x 1280 on this machine, memory-bound, which
at concurrency 32 on one serving core queues to ~90 ms. "Similar to item X" only ever asks about
catalogue items, so the top neighbours of every item are known per index version and a request is a
row lookup: a large catalogue's table comes with its snapshot (``index.neighbours``, built by the
``item_index`` asset); a smaller one is computed here (blocked matrix products, ~4 s per 10k items,
on the loader thread).
A tag filter keeps the table's neighbours that carry the tags; that is exactly the filtered top k
as long as at least k of them pass (anything outside the table scores lower than all of them), and
otherwise the query falls back to a search of the filter's rows: exact (a scan of just those rows)
for a catalogue small enough, approximate above ``ann.ANN_MIN_ITEMS`` items, where the snapshot
carries an inverted-file index (``index.ann``: the lists nearest the query among those holding the
filter's rows, with its bitmap; a 1280-d scan of a tag's rows at 100k items costs ~25 ms, the IVF
~0.2–0.5 ms warm). Search by picture goes the same way.
"""
import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..index.ann import Filter, IVFIndex
from ..index.exact import ExactIndex, top_k
from ..index.neighbours import EXACT_MAX_ITEMS, TABLE_BUDGET_BYTES, exact_table, table_size

log = logging.getLogger(__name__)
TUNE_K = 50     # the IVF's probes are chosen for this many neighbours (pages of similar items)


@dataclass(frozen=True, eq=False)
class RowFilter:
    """Index rows a query may return: a mask over the rows and the sorted rows it passes."""
    mask: np.ndarray
    rows: np.ndarray

    @cached_property
    def ann(self) -> Filter:
        return Filter(self.mask)


class SimilarItems:
    def __init__(self, index: ExactIndex, neighbours: int = 400, table_max_items: int = EXACT_MAX_ITEMS,
                 table_budget_bytes: int = TABLE_BUDGET_BYTES):
        self.index = index
        self.version = index.source or "unknown"
        n = len(index)
        self.table_size = table_size(n, neighbours, table_budget_bytes)
        self.neighbour_rows = self.neighbour_scores = None
        if index.neighbours is not None:          # stored with the snapshot
            rows, scores = index.neighbours
            self.table_size = min(self.table_size, rows.shape[1])
            self.neighbour_rows, self.neighbour_scores = rows[:, :self.table_size], scores[:, :self.table_size]
        elif 0 < n <= table_max_items and self.table_size > 0:
            self.neighbour_rows, self.neighbour_scores = exact_table(index.vectors, self.table_size)
        self.ann = self.problem = None
        if index.ivf is not None:       # stored with a large snapshot
            try:
                self.ann = IVFIndex.from_bytes(index.ivf, index.vectors)
                self.ann.tune_on(index.vectors, TUNE_K)
                index.ivf = None        # faiss holds its own copy: the bytes would double it (256 MB at 100k)
            except Exception as exc:    # a damaged index only costs speed: scan instead
                self.ann = None
                self.problem = f"the snapshot's IVF index cannot be used ({type(exc).__name__}: {exc}); scanning"
                log.warning(self.problem)

    def __len__(self) -> int:
        return len(self.index)

    def similar_rows(self, index_row: int, k: int, allowed: RowFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(index rows, scores) of the k nearest items, the item itself excluded, within ``allowed``."""
        if self.neighbour_rows is not None and k <= self.table_size:
            rows, scores = self.neighbour_rows[index_row], self.neighbour_scores[index_row]
            if allowed is None and rows[k - 1] >= 0:      # an approximate row may end early (-1)
                return rows[:k], scores[:k]
            keep = (rows >= 0) & (allowed.mask[rows] if allowed is not None else True)
            if keep.sum() >= k:
                return rows[keep][:k], scores[keep][:k]
        return self._search(self.index.vectors[index_row], k, allowed, exclude=index_row)

    def search_rows(self, vector: np.ndarray, k: int, allowed: RowFilter | None = None):
        return self._search(np.asarray(vector, dtype=np.float32), k, allowed, exclude=None)

    def _search(self, query: np.ndarray, k: int, allowed: RowFilter | None, exclude: int | None):
        """The IVF's answer: its probes hold enough of the filter's rows to give as many as the
        filter can; the exact scan is for a catalogue without an IVF (or one that falls short)."""
        if self.ann is not None:
            available = (len(self) if allowed is None else len(allowed.rows)) - (exclude is not None)
            rows, scores = self.ann.search(query, k + (exclude is not None), None if allowed is None else allowed.ann)
            keep = rows != exclude
            rows, scores = rows[keep][:k].astype(np.intp), scores[keep][:k]
            if len(rows) >= min(k, available):
                return rows, scores
        return self._scan(query, k, None if allowed is None else allowed.rows, exclude)

    def _scan(self, query: np.ndarray, k: int, candidates: np.ndarray | None, exclude: int | None):
        if candidates is None:
            scores = self.index.vectors @ query
            rows = None
        else:
            if len(candidates) == 0:
                return np.empty(0, np.intp), np.empty(0, np.float32)
            scores = np.take(self.index.vectors, candidates, axis=0) @ query   # take: faster gather
            rows = candidates
        if exclude is not None:
            if rows is None:
                scores[exclude] = -np.inf
            else:
                position = np.searchsorted(rows, exclude)
                if position < len(rows) and rows[position] == exclude:
                    scores[position] = -np.inf
        best = fast_top_k(scores, k)
        best = best[np.isfinite(scores[best])]
        return (best if rows is None else rows[best]), scores[best]


def fast_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Exactly ``top_k`` for one long score vector, several times faster at 10k: the k-th best of
    a strided sample is a threshold that at least k scores reach, so only the few scores above it
    are sorted (argpartition over all 10k costs ~65 us; sample + compare + ~10k/step sorts ~20 us)."""
    n = len(scores)
    step = n // max(1024, 16 * k)
    if step < 2:
        return top_k(scores, k)
    sample = scores[::step]
    threshold = np.partition(sample, len(sample) - k)[len(sample) - k]
    candidates = np.flatnonzero(scores >= threshold)
    if len(candidates) < k:   # only if the sample held NaN: take the slow, sure way
        return top_k(scores, k)
    return candidates[top_k(scores[candidates], k)]
