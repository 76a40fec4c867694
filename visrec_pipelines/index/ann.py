"""Approximate inner-product search for catalogues too large to scan on every request.

Serving scans the whole catalogue per query up to ``ANN_MIN_ITEMS`` items (~1 ms at 100k items x 64
factors, ~25 ms for a filtered scan of 1280-d image vectors: at concurrency 32 on one core either
queues far past a 30 ms p99). Above that a faiss inverted-file index (``IndexIVFFlat``, ~4·√n
lists, the same layout as ``neighbours.approximate_table``) compares a query with the few lists
nearest to it. How many lists (``nprobe``) is not guessed: ``tune`` raises it until the top k of a
sample of real queries agree with the exact top k to ``TARGET_RECALL``, and says what it reached.

A filter (a tag, a category) is a bitmap over the rows that faiss checks while it scans. The lists
to probe are chosen for it: the lists nearest the query among those holding any of its rows, until
they hold as many of its rows as an unfiltered search compares (``nprobe`` lists' worth). So a
filter whose rows lie far from the query (a colour the item's neighbourhood lacks) is searched
where its rows are, not in the query's own lists, and the search finds k of them whenever the
filter has k rows.

A snapshot's index keeps its copies of the vectors as float16 codes (``compact``): half the memory
(256 MB less at 100k x 1280-d) and half the bytes a probe reads (faiss' scan of a far filter's lists
263 -> 168 us; a whole filtered search in the server 287 -> 252 us). A unit vector's inner product
moves by ~1e-5 under float16, so the same rows come back (99.9% of them in a test at 100k; the others
tie to 1e-5), and ``search`` re-scores the rows it returns from the full vectors: its scores stay exact.
"""
from __future__ import annotations

import numpy as np

ANN_MIN_ITEMS = 30_000
TARGET_RECALL = 0.95
START_PROBES = 8
TUNE_QUERIES = 200
PARTITION_MIN_LISTS = 2048
RESCORE_MARGIN = 8     # float16 codes: this many more rows are found and re-scored


class IVFIndex:
    """faiss IVF over ``vectors`` (rows are the ids it answers with, or ``ids`` when given)."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray | None = None, seed: int = 0):
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        self.n, self.lists = n, max(1, min(int(4 * np.sqrt(n)), n // 40))   # ~40 training points a list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, self.lists, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        index.train(vectors[rng.choice(n, min(n, 40 * self.lists), replace=False)])
        self.ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        index.add_with_ids(vectors, self.ids)
        self.index, self.vectors = index, vectors
        self.nprobe, self.recall = min(START_PROBES, self.lists), None
        self._map_lists()
        self._codes_changed()

    def _codes_changed(self) -> None:
        """Kept as attributes: asked on every search (faiss' downcast alone cost ~3 us)."""
        import faiss

        self.exact_codes = isinstance(faiss.downcast_index(self.index), faiss.IndexIVFFlat)
        self._ids_are_rows = bool(np.array_equal(self.ids, np.arange(self.n)))

    def compact(self) -> IVFIndex:
        """Swap the lists' float32 copies of the vectors for float16 codes in the same lists (same
        centroids, same assignment, so tuning and the list maps stand); returns self."""
        import faiss

        if not self.exact_codes:
            return self
        if np.any(np.diff(self.ids) <= 0):
            raise ValueError("compact needs ids in increasing order (search maps them back to rows)")
        dim = self.vectors.shape[1]
        quantizer = faiss.IndexFlatIP(dim)
        quantizer.add(self.centroids)
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, self.lists, faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT, False)
        index.own_fields = True
        quantizer.this.disown()                 # the index frees it
        index.is_trained = True                 # float16 codes need no training
        lists = self.list_of[self.ids].astype(np.int64)
        index.add_core(self.n, faiss.swig_ptr(self.vectors), faiss.swig_ptr(self.ids), faiss.swig_ptr(lists))
        self.index = index
        self._codes_changed()
        return self

    def to_bytes(self) -> np.ndarray:
        """The trained, filled index as bytes (uint8), to store beside the vectors."""
        import faiss

        return faiss.serialize_index(self.index)

    @classmethod
    def from_bytes(cls, blob: np.ndarray, vectors: np.ndarray) -> IVFIndex:
        """The index ``to_bytes`` stored, over these ``vectors`` (rows are its ids)."""
        import faiss

        self = cls.__new__(cls)
        self.index = faiss.deserialize_index(np.asarray(blob, dtype=np.uint8))
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.n, self.lists = len(self.vectors), self.index.nlist
        if self.index.ntotal != self.n:
            raise ValueError(f"the stored index holds {self.index.ntotal} vectors, the snapshot {self.n}")
        self.ids = np.arange(self.n, dtype=np.int64)
        self.nprobe, self.recall = min(START_PROBES, self.lists), None
        self._map_lists()
        self._codes_changed()
        return self

    def _map_lists(self) -> None:
        """Which list holds each id (-1: none), the lists' sizes and their centroids: a filter's
        rows per list and the coarse scores of a filtered search come from these."""
        import faiss

        invlists = self.index.invlists
        self.list_of = np.full(int(self.ids.max()) + 1 if self.n else 0, -1, dtype=np.int32)
        for number in range(self.lists):
            size = invlists.list_size(number)
            if size:
                self.list_of[faiss.rev_swig_ptr(invlists.get_ids(number), size)] = number
        self.list_sizes = np.bincount(self.list_of[self.ids], minlength=self.lists)
        self.centroids = self.index.quantizer.reconstruct_n(0, self.lists)

    def tune(self, queries: np.ndarray, k: int, target: float = TARGET_RECALL) -> float:
        """The fewest probes (a power of two times the start) whose mean recall@k over ``queries``
        reaches ``target``, or every list; returns the recall reached (also kept as ``recall``).
        Fewer probes are tried too: a well-clustered catalogue needs fewer than the start."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.n)
        scores = queries @ self.vectors.T
        exact = self.ids[np.argpartition(-scores, k - 1, axis=1)[:, :k]]

        def recall_at(nprobe: int) -> float:
            found = self.search_many(queries, k, nprobe)[1]
            return float(np.mean([len(np.intersect1d(f, e)) / k for f, e in zip(found, exact)]))

        nprobe, reached = self.nprobe, recall_at(self.nprobe)
        while reached < target and nprobe < self.lists:
            nprobe = min(2 * nprobe, self.lists)
            reached = recall_at(nprobe)
        while reached >= target and nprobe > 1:
            fewer = recall_at(nprobe // 2)
            if fewer < target:
                break
            nprobe, reached = nprobe // 2, fewer
        self.nprobe, self.recall = nprobe, reached
        return reached

    def tune_on(self, pool: np.ndarray, k: int, seed: int = 0) -> float:
        """``tune`` on a fixed random sample of TUNE_QUERIES rows of ``pool`` (the kind of vector
        the index will be asked with: users' vectors, items' own)."""
        sample = np.random.default_rng(seed).choice(len(pool), min(len(pool), TUNE_QUERIES), replace=False)
        return self.tune(pool[np.sort(sample)], k)

    def search(self, query: np.ndarray, k: int, allowed: Filter | None = None,
               everywhere: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the best ``k`` for one query, best first; fewer only when the lists
        searched hold fewer. With a filter, the nearest lists holding its rows are probed until they
        hold ``nprobe`` lists' worth of them. ``everywhere``: every list holding any (exact)."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        exact = self.exact_codes
        wanted = k if exact else k + RESCORE_MARGIN    # near-ties at the k-th place are re-scored too
        if allowed is None and not everywhere:
            scores, ids = self.search_many(query[None, :], wanted, self.nprobe)
        else:
            scores, ids = self._search_lists(query, wanted, allowed, everywhere)
        found = ids[0] >= 0
        ids, scores = ids[0][found], scores[0][found]
        if not exact and len(ids):
            rows = ids if self._ids_are_rows else np.searchsorted(self.ids, ids)
            scores = np.take(self.vectors, rows, axis=0) @ query
            order = np.argsort(-scores, kind="stable")[:k]
            ids, scores = ids[order], scores[order]
        return ids, scores

    def _search_lists(self, query: np.ndarray, k: int, allowed: Filter | None, everywhere: bool):
        import faiss

        held = self.list_sizes if allowed is None else allowed.rows_per_list(self)
        lists = np.flatnonzero(held)
        # only the lists holding the filter's rows are scored: a category's rows usually sit in a
        # few lists, and the full centroid table (~6 MB at 100k x 1280-d) read per request was as
        # costly under load as the search itself; faiss reads them in place (a copy cost as much)
        if 2 * len(lists) < self.lists:
            lists = lists.astype(np.int64)
            coarse = np.empty(len(lists), np.float32)
            faiss.fvec_inner_products_by_idx(faiss.swig_ptr(coarse), faiss.swig_ptr(query),
                                             faiss.swig_ptr(self.centroids), faiss.swig_ptr(lists),
                                             len(query), 1, len(lists))
        else:
            coarse = (self.centroids @ query)[lists]
        if not everywhere:
            enough = max(k, self.nprobe * self.n / self.lists)     # what an unfiltered search compares
            order = _nearest_holding(coarse, held[lists], enough)
        else:
            order = np.argsort(-coarse, kind="stable")
        lists, centroid_scores = lists[order].astype(np.int64), np.ascontiguousarray(coarse[order])
        params = faiss.SearchParametersIVF(nprobe=len(lists), sel=None if allowed is None else allowed.selector)
        scores, ids = np.empty((1, k), np.float32), np.full((1, k), -1, np.int64)
        if len(lists):
            self.index.search_preassigned_c(1, faiss.swig_ptr(query), k, faiss.swig_ptr(lists),
                                            faiss.swig_ptr(centroid_scores), faiss.swig_ptr(scores),
                                            faiss.swig_ptr(ids), False, params)
        return scores, ids

    def search_many(self, queries: np.ndarray, k: int, nprobe: int, selector=None):
        """faiss' (scores, ids) of the best k per query row, -1 where fewer were found (the codes'
        scores: within ~1e-5 of exact for unit vectors once ``compact``)."""
        import faiss

        params = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector) if selector is not None \
            else faiss.SearchParametersIVF(nprobe=nprobe)
        return self.index.search(queries, k, params=params)


def _nearest_holding(scores: np.ndarray, held: np.ndarray, enough: float) -> np.ndarray:
    """Positions of the best-scoring lists, best first, until they hold ``enough`` rows (all if
    they never do). Only a few lists are needed, so among thousands of lists twice the share that
    would do on average is partitioned out and sorted, not all of them; a sort of fewer costs less
    than the partition's extra steps (60 lists: 10 us against 19)."""
    guess = int(np.ceil(2 * enough * len(scores) / max(int(held.sum()), 1))) + 1
    if len(scores) > PARTITION_MIN_LISTS and guess < len(scores):
        head = np.argpartition(-scores, guess)[:guess]
        head = head[np.argsort(-scores[head], kind="stable")]
        cumulative = np.cumsum(held[head])
        if cumulative[-1] >= enough:
            return head[: int(np.searchsorted(cumulative, enough)) + 1]
    order = np.argsort(-scores, kind="stable")
    return order[: int(np.searchsorted(np.cumsum(held[order]), enough)) + 1]


class Filter:
    """Rows a query may return, as faiss wants them (a bitmap it checks while scanning), and how many
    of them each list of an index holds (counted once per index)."""

    def __init__(self, mask: np.ndarray):
        import faiss

        self.mask = np.asarray(mask, dtype=bool)
        self._bits = np.packbits(self.mask, bitorder="little")         # kept: faiss reads it by pointer
        self.selector = faiss.IDSelectorBitmap(len(self.mask), faiss.swig_ptr(self._bits))
        self._counted: tuple[IVFIndex, np.ndarray] | None = None

    def rows_per_list(self, ivf: IVFIndex) -> np.ndarray:
        if self._counted is None or self._counted[0] is not ivf:
            rows = np.flatnonzero(self.mask[: len(ivf.list_of)])
            lists = ivf.list_of[rows]
            self._counted = (ivf, np.bincount(lists[lists >= 0], minlength=ivf.lists))
        return self._counted[1]
