"""Approximate inner-product search for catalogues too large to scan on every request.

Serving scans the whole catalogue per query up to ``ANN_MIN_ITEMS`` items (~1 ms at 100k items x 64
factors, ~25 ms for a filtered scan of 1280-d image vectors: at concurrency 32 on one core either
queues far past a 30 ms p99). Above that a faiss inverted-file index (``IndexIVFFlat``, ~4·√n
lists, the same layout as ``neighbours.approximate_table``) compares a query with the few lists
nearest to it. How many lists (``nprobe``) is not guessed: ``tune`` raises it until the top k of a
sample of real queries agree with the exact top k to ``TARGET_RECALL``, and says what it reached.

A filter (a tag, a category) is a bitmap over the rows: faiss skips the rows outside it while it
scans, and the number of lists probed grows with 1 / the filter's share of the catalogue, so a
filtered query sees about as many passing rows as an unfiltered one sees rows. Fewer than k found
(a filter whose rows all sit far away): ``search`` returns what it found and the caller scans the
filter's rows exactly.
"""
from __future__ import annotations

import numpy as np

ANN_MIN_ITEMS = 30_000
TARGET_RECALL = 0.95
START_PROBES = 8
TUNE_QUERIES = 200


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
        return self

    def tune(self, queries: np.ndarray, k: int, target: float = TARGET_RECALL) -> float:
        """Double ``nprobe`` until the mean recall@k over ``queries`` reaches ``target`` (or every
        list is probed); returns the recall reached (also kept as ``recall``)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.n)
        scores = queries @ self.vectors.T
        exact = self.ids[np.argpartition(-scores, k - 1, axis=1)[:, :k]]
        while True:
            found = self.search_many(queries, k, self.nprobe)[1]
            self.recall = float(np.mean([len(np.intersect1d(f, e)) / k for f, e in zip(found, exact)]))
            if self.recall >= target or self.nprobe >= self.lists:
                return self.recall
            self.nprobe = min(2 * self.nprobe, self.lists)

    def tune_on(self, pool: np.ndarray, k: int, seed: int = 0) -> float:
        """``tune`` on a fixed random sample of TUNE_QUERIES rows of ``pool`` (the kind of vector
        the index will be asked with: users' vectors, items' own)."""
        sample = np.random.default_rng(seed).choice(len(pool), min(len(pool), TUNE_QUERIES), replace=False)
        return self.tune(pool[np.sort(sample)], k)

    def search(self, query: np.ndarray, k: int, allowed: Filter | None = None,
               everywhere: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the best ``k`` for one query, best first; fewer when the lists probed
        held fewer (a filter far from the query). ``everywhere``: probe every list, which with a
        filter is an exact search of just its rows (faiss checks the bitmap before it computes)."""
        nprobe = self.lists if everywhere else self.nprobe if allowed is None else \
            min(self.lists, int(np.ceil(self.nprobe / max(allowed.share, 1e-6))))
        scores, ids = self.search_many(np.asarray(query, dtype=np.float32)[None, :], k, nprobe,
                                       None if allowed is None else allowed.selector)
        found = ids[0] >= 0
        return ids[0][found], scores[0][found]

    def search_many(self, queries: np.ndarray, k: int, nprobe: int, selector=None):
        """faiss' (scores, ids) of the best k per query row, -1 where fewer were found."""
        import faiss

        params = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector) if selector is not None \
            else faiss.SearchParametersIVF(nprobe=nprobe)
        return self.index.search(queries, k, params=params)


class Filter:
    """Rows a query may return, as faiss wants them (a bitmap it checks while scanning)."""

    def __init__(self, mask: np.ndarray):
        import faiss

        mask = np.asarray(mask, dtype=bool)
        self.share = float(mask.mean()) if len(mask) else 0.0
        self._bits = np.packbits(mask, bitorder="little")         # kept: faiss reads it by pointer
        self.selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(self._bits))
