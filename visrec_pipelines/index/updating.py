"""Bring a dataset's item index up to date: Milvus (the index of record) and the exact snapshot
serving loads, written from the same arrays.

A full build makes a new collection and switches the alias; when the catalogue sensor named the
changed items, only those are upserted or deleted in the live collection (in place), provided the
last snapshot was taken from it. Both are derived data, so damage is repaired by rebuilding: an
unreadable snapshot means a full build, and a milvus-lite database that cannot be read is moved
aside (``<name>.corrupt-<id>``) and built again from the embeddings. A Milvus server is never
touched that way: its errors are raised.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .exact import ExactIndex
from .milvus_index import MilvusLocked
from .neighbours import prepare_snapshot


@dataclass
class IndexUpdate:
    collection: str
    count: int
    version: str                    # what the snapshot says it was taken from
    snapshot: ExactIndex
    change: dict                    # mode full | incremental, upserted, deleted
    repairs: list[str] = field(default_factory=list)


def update_item_index(open_index: Callable, lite_file: Path | None, snapshot_path: Path,
                      ids: Sequence[str], vectors: np.ndarray, categories: list[str], tags: list[list[str]],
                      titles: list[str], only_items: Sequence[str] = (), removed_items: Sequence[str] = (),
                      run_tag: str = "") -> IndexUpdate:
    """``open_index()`` gives a MilvusItemIndex (a context manager); ``lite_file`` is its
    milvus-lite database, or None for a server."""
    repairs: list[str] = []
    previous = _incremental_base(snapshot_path, only_items, removed_items, repairs)
    try:
        collection, count, change = _apply(open_index, previous, ids, vectors, categories, tags, titles,
                                           only_items, removed_items)
    except MilvusLocked:
        raise
    except Exception as problem:
        if lite_file is None or not Path(lite_file).exists():
            raise
        aside = Path(f"{lite_file}.corrupt-{uuid.uuid4().hex[:8]}")
        os.replace(lite_file, aside)
        repairs.append(f"the milvus-lite database could not be used ({type(problem).__name__}: "
                       f"{str(problem)[:200]}); moved to {aside.name} and rebuilt from the embeddings")
        collection, count, change = _apply(open_index, None, ids, vectors, categories, tags, titles, (), ())
    version = collection if change["mode"] == "full" else f"{collection}#{run_tag}"
    snapshot = ExactIndex(ids, vectors, categories, tags, source=version)
    prepare_snapshot(snapshot)
    snapshot.save(snapshot_path)
    return IndexUpdate(collection, count, version, snapshot, change, repairs)


def _apply(open_index, previous, ids, vectors, categories, tags, titles, only_items, removed_items):
    with open_index() as index:
        live = index.current_collection()
        if previous is None or live is None or previous.source.split("#")[0] != live:
            collection, change = index.build(ids, vectors, categories, tags, titles), {"mode": "full"}
        else:   # the sensor named what changed: touch those rows only, in Milvus and the snapshot
            change = {"mode": "incremental", **index.apply_changes(ids, vectors, categories, tags, titles,
                                                                  only_items, removed_items)}
            collection = live
        return collection, index.count(), change


def _incremental_base(snapshot_path: Path, only_items, removed_items, repairs: list[str]) -> ExactIndex | None:
    """The snapshot to update in place, or None for a full build: no change list, no snapshot, or
    one that cannot be read."""
    if not (only_items or removed_items) or not Path(snapshot_path).exists():
        return None
    try:
        return ExactIndex.load(snapshot_path)
    except Exception as problem:       # rebuilding everything also rewrites the snapshot
        repairs.append(f"{Path(snapshot_path).name} could not be read ({type(problem).__name__}); "
                       "rebuilt the whole index")
        return None
