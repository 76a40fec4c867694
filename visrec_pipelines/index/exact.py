"""Exact in-memory inner-product search over unit vectors (numpy), with the Milvus index's filters.

This is the serving hot path (see `visrec_pipelines.index` for the numbers behind that choice):
one matrix-vector product over the catalogue, `argpartition` for the top k. Filters are
precomputed row lists per category and per tag, so a filtered query only scores its candidates.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from visrec_pipelines.atomic import write_atomically

_TAG_JOIN = "\x1f"  # ASCII unit separator: cannot clash with a real tag, keeps the .npz pickle-free
Neighbours = list[tuple[str, float]]


def unit_rows(vectors) -> np.ndarray:
    """float32, C-contiguous, each row scaled to length 1 (zero rows stay zero)."""
    matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if matrix.ndim != 2:
        raise ValueError(f"vectors must be a 2-d array (items x dim), got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def as_tag_list(tags) -> list[str]:
    """None/NaN -> [], "a" -> ["a"], iterable -> list without empty tags (an item's or a filter's)."""
    if tags is None or isinstance(tags, float):  # float: a pandas NaN for "no tags"
        return []
    return [t for t in ([tags] if isinstance(tags, str) else map(str, tags)) if t]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores along the last axis, best first."""
    k = min(k, scores.shape[-1])
    if k <= 0:
        return np.empty(scores.shape[:-1] + (0,), dtype=np.intp)
    part = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


class ExactIndex:
    def __init__(self, item_ids: Sequence[str], vectors, categories: Sequence[str] | None = None,
                 tags: Sequence[Iterable[str]] | None = None, source: str = "",
                 neighbours: tuple[np.ndarray, np.ndarray] | None = None):
        self.item_ids = np.asarray([str(i) for i in item_ids], dtype=str)
        self.vectors = unit_rows(vectors)
        n = len(self.item_ids)
        if self.vectors.shape[0] != n:
            raise ValueError(f"{n} item ids but {self.vectors.shape[0]} vectors")
        self.categories = np.asarray(list(categories) if categories is not None else [""] * n, dtype=str)
        self.tags = [as_tag_list(t) for t in tags] if tags is not None else [[] for _ in range(n)]
        if len(self.categories) != n or len(self.tags) != n:
            raise ValueError("item_ids, vectors, categories and tags must have the same length")
        self.source = source  # e.g. the Milvus collection this snapshot was taken from
        # (rows, scores) of each item's precomputed top neighbours (index.neighbours), or None
        self.neighbours = neighbours if neighbours is None or len(neighbours[0]) == n else None
        self.ivf: np.ndarray | None = None   # a serialised ``ann.IVFIndex`` over the vectors, or None
        self._row = {item_id: row for row, item_id in enumerate(self.item_ids)}
        if len(self._row) != n:
            raise ValueError("item ids must be unique")
        self._rows_by_category = _group_rows((c,) for c in self.categories)
        self._rows_by_tag = _group_rows(self.tags)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def count(self) -> int:
        return len(self)

    # --- queries -------------------------------------------------------------------------------
    def search_vector(self, vector, k: int = 10, category: str | None = None, tags=None) -> Neighbours:
        return self.search_vectors(np.asarray(vector, dtype=np.float32)[None, :], k, category, tags)[0]

    def similar_items(self, item_id: str, k: int = 10, category: str | None = None, tags=None) -> Neighbours:
        return self.similar_items_batch([item_id], k, category, tags)[0]

    def similar_items_batch(self, item_ids: Sequence[str], k: int = 10, category: str | None = None,
                            tags=None) -> list[Neighbours]:
        rows = np.asarray([self.row_of(i) for i in item_ids], dtype=np.intp)
        return self._search(self.vectors[rows], k, category, tags, exclude_rows=rows)

    def search_vectors(self, queries, k: int = 10, category: str | None = None, tags=None,
                       batch_size: int = 256) -> list[Neighbours]:
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (n, {self.dim}), got {queries.shape}")
        return self._search(queries, k, category, tags, batch_size=batch_size)

    def row_of(self, item_id: str) -> int:
        try:
            return self._row[str(item_id)]
        except KeyError:
            raise KeyError(f"item {item_id!r} is not in the index ({len(self)} items"
                           f"{', from ' + self.source if self.source else ''})") from None

    def candidate_rows(self, category: str | None = None, tags=None) -> np.ndarray | None:
        """Sorted rows passing the filters; None means every row (no filter)."""
        sets = []
        if category is not None:
            sets.append(self._rows_by_category.get(category, _NO_ROWS))
        sets += [self._rows_by_tag.get(tag, _NO_ROWS) for tag in as_tag_list(tags)]
        if not sets:
            return None
        rows = min(sets, key=len)
        for other in sets:
            if other is not rows:
                rows = np.intersect1d(rows, other, assume_unique=True)
        return rows

    def _search(self, queries: np.ndarray, k: int, category, tags, exclude_rows=None,
                batch_size: int = 256) -> list[Neighbours]:
        candidates = self.candidate_rows(category, tags)
        matrix = self.vectors if candidates is None else self.vectors[candidates]
        results: list[Neighbours] = []
        for start in range(0, len(queries), batch_size):
            scores = queries[start:start + batch_size] @ matrix.T
            if exclude_rows is not None and scores.shape[1]:  # an item is never its own neighbour
                excluded = exclude_rows[start:start + batch_size]
                cols = excluded if candidates is None else np.searchsorted(candidates, excluded)
                valid = cols < scores.shape[1]
                if candidates is not None:
                    valid &= candidates[np.minimum(cols, len(candidates) - 1)] == excluded
                scores[np.flatnonzero(valid), cols[valid]] = -np.inf
            best = top_k(scores, k)
            for row_scores, positions in zip(scores, best):
                rows = positions if candidates is None else candidates[positions]
                results.append([(self.item_ids[r].item(), float(s))
                                for r, s in zip(rows, row_scores[positions]) if s != -np.inf])
        return results

    # --- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        tags = np.asarray([_TAG_JOIN.join(t) for t in self.tags], dtype=str)
        # a server polling this file sees the old or the new snapshot, never a half-written one
        table = {} if self.neighbours is None else {"neighbour_rows": self.neighbours[0],
                                                     "neighbour_scores": self.neighbours[1]}
        if self.ivf is not None:
            table["ivf"] = self.ivf
        return write_atomically(path, lambda f: np.savez(
            f, item_ids=self.item_ids, vectors=self.vectors, categories=self.categories, tags=tags,
            source=np.asarray(self.source), **table))

    @classmethod
    def load(cls, path: str | Path) -> ExactIndex:
        with np.load(path, allow_pickle=False) as data:
            n = len(data["item_ids"])
            categories = data["categories"] if "categories" in data else None
            tags = ([t.split(_TAG_JOIN) if t else [] for t in data["tags"].tolist()]
                    if "tags" in data else [[] for _ in range(n)])
            source = str(data["source"]) if "source" in data else str(path)
            table = ((data["neighbour_rows"], data["neighbour_scores"]) if "neighbour_rows" in data else None)
            index = cls(data["item_ids"], data["vectors"], categories, tags, source=source, neighbours=table)
            index.ivf = data["ivf"] if "ivf" in data else None
            return index

    @classmethod
    def from_milvus(cls, milvus_index, batch_size: int | None = None) -> ExactIndex:
        """Snapshot of the collection the Milvus alias points at (the index of record)."""
        collection, item_ids, vectors, categories, tags = milvus_index.export(batch_size=batch_size)
        return cls(item_ids, vectors, categories, tags, source=collection)


_NO_ROWS = np.empty(0, dtype=np.intp)


def _group_rows(keys_per_row: Iterable[Iterable[str]]) -> dict[str, np.ndarray]:
    groups: dict[str, list[int]] = {}
    for row, keys in enumerate(keys_per_row):
        for key in set(keys):
            groups.setdefault(key, []).append(row)
    return {key: np.asarray(rows, dtype=np.intp) for key, rows in groups.items()}
