"""The item vector index of record, in Milvus: a milvus-lite file locally, a Milvus server in production.

Readers always go through an alias. `build` fills a brand-new collection, indexes and loads it, checks
it answers, and only then points the alias at it, so there is never a moment without a working index;
collections older than the last `keep` are dropped afterwards.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import ConnectionConfigException, MilvusException

from visrec_pipelines.index import milvus_schema as ms
from visrec_pipelines.index.exact import Neighbours, unit_rows

INSERT_BATCH_BYTES = 8 * 1024 * 1024  # well under gRPC's message limit; bigger batches are no faster
EXPORT_PAGE_BYTES = 16 * 1024 * 1024
# milvus-lite also accepts IVF_PQ, DISKANN, SCANN and reports them built, but they fail in the
# background and every search then scans everything: refuse them up front.
LITE_INDEX_TYPES = {"FLAT", "AUTOINDEX", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8"}
INDEX_TYPE_TTL_S = 10.0

# pymilvus starts one in-process milvus-lite server per file and never stops it on close(); it holds
# the file's lock, so we stop it when the last MilvusItemIndex on that file closes.
_lite_users: dict[str, int] = {}
_lite_users_lock = threading.Lock()


class MilvusLocked(RuntimeError):
    """Another process holds the milvus-lite database (one process per file)."""


def open_item_index(warehouse, uri: str | None = None, token: str = "", purpose: str = "items") -> MilvusItemIndex:
    """A dataset's index: the Milvus server at ``uri`` (``Settings.milvus_uri``), else its milvus-lite
    file in the warehouse; one alias per dataset and purpose (``warehouse.Warehouse``). With
    milvus-lite each purpose gets its own file: one process may hold a file at a time."""
    return MilvusItemIndex(uri=uri or str(warehouse.milvus_lite_file(purpose)),
                           alias=warehouse.milvus_alias(purpose), token=token)


class MilvusItemIndex:
    def __init__(self, uri: str, alias: str = "visrec_items", keep: int = 2, token: str = ""):
        if keep < 1:
            raise ValueError("keep must be >= 1 (the collection the alias points at)")
        self.uri, self.alias, self.keep = str(uri), alias, keep
        self._lite_path = os.path.abspath(self.uri) if self.uri.endswith(".db") else None
        self._client: MilvusClient | None = _connect(self.uri, self._lite_path, token)
        self._index_type: str | None = None  # of the live collection, for its search parameters,
        self._tag_array = False               # and its tag layout (milvus_schema); both looked up
        self._index_type_at = 0.0             # again after INDEX_TYPE_TTL_S (another process may
                                              # rebuild with another index type)

    # --- building ------------------------------------------------------------------------------
    def build(self, item_ids: Sequence[str], vectors, categories: Sequence[str] | None = None,
              tags: Sequence | None = None, titles: Sequence[str] | None = None,
              index_type: str = "FLAT", build_params: dict | None = None, normalise: bool = True) -> str:
        """Index these items in a new collection, switch the alias to it, drop old ones. Returns its name.

        ``normalise=False`` keeps vector lengths: for a ranker's item vectors, whose inner product
        with a user vector is the score (image vectors are unit length, so IP is cosine)."""
        vectors = unit_rows(vectors) if normalise else np.ascontiguousarray(vectors, dtype=np.float32)
        ids = [str(i) for i in item_ids]
        n, dim = vectors.shape
        categories, tags, titles = (list(x) if x is not None else [None] * n for x in (categories, tags, titles))
        if n == 0 or not (len(ids) == n == len(categories) == len(tags) == len(titles)):
            raise ValueError(f"need one vector, category, tag list and title per item ({len(ids)} ids, {n} vectors)")
        if len(set(ids)) != n:
            raise ValueError("item ids must be unique")
        index_type = index_type.upper()
        if self._lite_path and index_type not in LITE_INDEX_TYPES:
            raise ValueError(f"milvus-lite cannot build {index_type}; use one of {sorted(LITE_INDEX_TYPES)}")
        name = f"{self.alias}_{datetime.now(UTC):%Y%m%d_%H%M%S_%f}_{uuid.uuid4().hex[:6]}"
        tag_array = self._lite_path is None   # the tag layout each kind filters well (milvus_schema)
        client = self._live_client()
        client.create_collection(name, schema=ms.item_schema(dim, tag_array), consistency_level="Strong")
        try:
            batch = max(256, INSERT_BATCH_BYTES // (4 * dim))
            for s in range(0, n, batch):
                client.insert(name, ms.rows(ids[s:s + batch], vectors[s:s + batch], categories[s:s + batch],
                                            tags[s:s + batch], titles[s:s + batch], tag_array))
            client.flush(name)  # seal the data before indexing, so load() indexes all of it
            params = client.prepare_index_params()
            params.add_index(ms.VECTOR_FIELD, index_name=ms.VECTOR_FIELD, index_type=index_type, metric_type="IP",
                             params=build_params if build_params is not None else ms.BUILD_PARAMS.get(index_type, {}))
            client.create_index(name, params)
            client.load_collection(name)
            self._check_answers(name, n, vectors[0], (index_type, tag_array))
        except BaseException:
            with contextlib.suppress(Exception):  # never leave a half-built collection behind
                client.drop_collection(name)
            raise
        self._point_alias_at(name)
        self._index_type, self._tag_array, self._index_type_at = index_type, tag_array, time.monotonic()
        self._drop_old_collections(name)
        return name

    def upsert(self, item_ids, vectors, categories=None, tags=None, titles=None) -> int:
        """Incremental update of the live collection (the next `build` starts from scratch)."""
        vectors = unit_rows(vectors)
        n = len(vectors)
        filled = (list(x) if x is not None else [None] * n for x in (categories, tags, titles))
        _, tag_array = self._layout()
        result = self._live_client().upsert(self.alias, ms.rows([str(i) for i in item_ids], vectors, *filled,
                                                                tag_array=tag_array))
        return int(result.get("upsert_count", n))

    def delete(self, item_ids: Sequence[str]) -> None:
        self._live_client().delete(self.alias, ids=[str(i) for i in item_ids])

    def apply_changes(self, item_ids: Sequence[str], vectors, categories, tags, titles,
                      changed: Sequence[str], removed: Sequence[str]) -> dict:
        """Bring the live collection up to date for ``changed`` and ``removed`` items only, given
        the whole catalogue (ids aligned with vectors, categories, tags, titles): changed items
        still in it are upserted, the rest (removed, or changed out of the catalogue) deleted."""
        row = {str(item_id): n for n, item_id in enumerate(item_ids)}
        upsert = [i for i in dict.fromkeys(map(str, changed)) if i in row]
        gone = sorted((set(map(str, removed)) | set(map(str, changed))) - set(row))
        picked = [row[i] for i in upsert]
        if upsert:
            self.upsert(upsert, np.asarray(vectors)[picked], [categories[n] for n in picked],
                        [tags[n] for n in picked], [titles[n] for n in picked])
        if gone:
            self.delete(gone)
        return {"upserted": len(upsert), "deleted": len(gone)}

    # --- queries -------------------------------------------------------------------------------
    def search_vector(self, vector, k: int = 10, category: str | None = None, tags=None) -> Neighbours:
        if k <= 0:
            return []
        query = unit_rows(np.asarray(vector, dtype=np.float32)[None, :])[0].tolist()
        try:
            hits = self._search(self.alias, query, k, category, tags)
        except MilvusException:
            # Another process may have switched the alias to a collection of another index type
            # or tag layout, whose search parameters or filters differ: look them up again, once.
            self._index_type = None
            hits = self._search(self.alias, query, k, category, tags)
        # hit.id, not hit["item_id"]: servers before 2.4 do not name the primary key in results
        return [(str(hit.id), float(hit.distance)) for hit in hits]

    def similar_items(self, item_id: str, k: int = 10, category: str | None = None, tags=None) -> Neighbours:
        """Nearest neighbours of an indexed item, itself excluded (2 calls: fetch its vector, search)."""
        item_id = str(item_id)
        found = self._live_client().query(self.alias, ids=[item_id], output_fields=[ms.VECTOR_FIELD])
        if not found:
            raise KeyError(f"item {item_id!r} is not in the Milvus index {self.alias!r} at {self.uri}")
        hits = self.search_vector(found[0][ms.VECTOR_FIELD], k + 1, category, tags)
        return [hit for hit in hits if hit[0] != item_id][:k]

    def count(self) -> int:
        if self.current_collection() is None:
            return 0
        return int(self._live_client().query(self.alias, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def current_collection(self) -> str | None:
        """The collection the alias points at; None before the first build."""
        client = self._live_client()
        if self.alias not in client.list_aliases().get("aliases", []):
            return None
        return client.describe_alias(self.alias)["collection_name"]

    def collections(self) -> list[str]:
        """Collections built by this index (any age), oldest first."""
        managed = re.compile(re.escape(self.alias) + r"_\d{8}_\d{6}_\d{6}_[0-9a-f]{6}")
        return sorted(c for c in self._live_client().list_collections() if managed.fullmatch(c))

    def export(self, batch_size: int | None = None):
        """(collection, item_ids, vectors, categories, tags) of the live collection, read by iterator.

        Pages of ~16 MB: every page is a filtered, sorted scan server-side, so small pages make
        the export quadratic (100k x 512 took 60 s with 1,000-row pages)."""
        collection = self.current_collection()
        if collection is None:
            raise LookupError(f"no Milvus index {self.alias!r} at {self.uri}: build it first")
        # a milvus-lite file reopened by another process has its collections released, and the
        # query iterator needs them loaded (a no-op where the collection is loaded already)
        self._live_client().load_collection(collection)
        if batch_size is None:
            fields = self._live_client().describe_collection(collection)["fields"]
            dim = next(int(f["params"]["dim"]) for f in fields if f["name"] == ms.VECTOR_FIELD)
            batch_size = min(16_384, max(256, EXPORT_PAGE_BYTES // (4 * dim)))
        iterator = self._live_client().query_iterator(
            collection, batch_size=batch_size, output_fields=["item_id", "category", "tags", ms.VECTOR_FIELD])
        ids, vectors, categories, tags = [], [], [], []
        try:
            while batch := iterator.next():
                for row in batch:
                    ids.append(row["item_id"])
                    vectors.append(row[ms.VECTOR_FIELD])
                    categories.append(row["category"])
                    tags.append(ms.decode_tags(row["tags"]))
        finally:
            iterator.close()
        return collection, ids, np.asarray(vectors, dtype=np.float32), categories, tags

    # --- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._client is None:
            return
        self._client.close()
        self._client = None
        if self._lite_path:
            _release_lite(self._lite_path)

    def __enter__(self) -> MilvusItemIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------
    def _live_client(self) -> MilvusClient:
        if self._client is None:
            raise RuntimeError("this MilvusItemIndex is closed")
        return self._client

    def _layout(self) -> tuple[str, bool]:
        """(index type, tags stored as an ARRAY) of the collection the alias points at."""
        if self._index_type is None or time.monotonic() - self._index_type_at > INDEX_TYPE_TTL_S:
            client = self._live_client()
            index_type = client.describe_index(self.alias, ms.VECTOR_FIELD)["index_type"]
            self._tag_array = ms.tag_array_of(client.describe_collection(self.alias))
            self._index_type, self._index_type_at = index_type, time.monotonic()
        return self._index_type, self._tag_array

    def _search(self, collection: str, query: list, k: int, category=None, tags=None,
                layout: tuple[str, bool] | None = None) -> list:
        index_type, tag_array = layout or self._layout()
        return self._live_client().search(collection, data=[query], limit=k,
                                          filter=ms.filter_expression(category, tags, tag_array),
                                          anns_field=ms.VECTOR_FIELD,
                                          search_params=ms.search_params(index_type, k))[0]

    def _check_answers(self, name: str, expected_rows: int, probe: np.ndarray, layout: tuple[str, bool]) -> None:
        rows = self._live_client().query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]
        hits = self._search(name, probe.tolist(), 1, layout=layout)
        if rows != expected_rows or not hits:
            raise RuntimeError(f"new collection {name} holds {rows}/{expected_rows} rows "
                               f"and answered {len(hits)} hits; alias {self.alias!r} left unchanged")

    def _point_alias_at(self, name: str) -> None:
        client = self._live_client()
        if self.current_collection() is None:
            client.create_alias(name, self.alias)
        else:
            client.alter_alias(name, self.alias)  # atomic switch: readers see old or new, never neither

    def _drop_old_collections(self, current: str) -> None:
        # Only collections older than the live one: a newer one may be another builder's work in progress.
        older = [c for c in self.collections() if c < current]
        for name in older[:max(0, len(older) - (self.keep - 1))]:
            self._live_client().drop_collection(name)


def _connect(uri: str, lite_path: str | None, token: str) -> MilvusClient:
    if lite_path is None:
        return MilvusClient(uri=uri, token=token)
    Path(lite_path).parent.mkdir(parents=True, exist_ok=True)
    with _lite_users_lock:
        try:
            client = MilvusClient(uri=lite_path)
        except ConnectionConfigException as e:
            raise MilvusLocked(f"cannot open the milvus-lite database {lite_path}: another process "
                               "probably holds its lock (one process per file); close it there, or "
                               "use a Milvus server URI") from e
        _lite_users[lite_path] = _lite_users.get(lite_path, 0) + 1
    return client


def _release_lite(lite_path: str) -> None:
    with _lite_users_lock:
        _lite_users[lite_path] -= 1
        if _lite_users[lite_path] > 0:
            return
        del _lite_users[lite_path]
        from milvus_lite.server_manager import server_manager_instance
        server_manager_instance.release_server(lite_path)
