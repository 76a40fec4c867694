"""Incremental on-disk store of image embeddings for ONE encoder: `<root>/<encoder_id>/`.

Rows are keyed by (item_id, sha256 of the image bytes) and appended as immutable Parquet chunks
named `<time_ns>-<random>.parquet`; the latest row of an item wins, and a removal is a tombstone
row. So a writer never holds more than one chunk, and writers of disjoint shards (processes or
machines, see `shard_of`) can share a store without locks: every chunk has a unique name and
appears atomically (written to a dot-file, then renamed). `compact()` merges everything into one
chunk; run it when no writer is active. Chunks are small (``CHUNK_ROWS``), so a killed run loses at
most one chunk of work; what it leaves behind is cleaned up by the next opener (``store_repair``),
and a damaged chunk or manifest is set aside or rebuilt, never a reason to fail every later run.
(Over 300 lines: the store and its streaming ``ChunkWriter`` share the chunk format's internals.)
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from visrec_pipelines.atomic import write_atomically
from visrec_pipelines.vision.store_repair import set_aside, sweep_orphans, temp_name

FORMAT_VERSION = 1
CHUNK_ROWS = 1024   # published every this many rows: the most work a killed run can lose
TOP_K = 10
Loaded = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def shard_of(item_id: str, n_shards: int) -> int:
    """Stable across processes and machines (unlike hash())."""
    digest = hashlib.blake2b(str(item_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards


@dataclass
class Plan:
    to_embed: pd.DataFrame   # catalogue rows whose image is new or changed
    to_remove: list[str]     # stored items no longer in the catalogue
    unchanged: int


class EmbeddingStore:
    def __init__(self, root: str | Path, encoder_id: str, preprocessing: dict | None = None,
                 dim: int | None = None):
        self.encoder_id = encoder_id
        self.path = Path(root) / encoder_id.replace(":", "_")
        self.chunks_dir = self.path / "chunks"
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        self.repairs: list[str] = []         # what opening and reading had to mend, for reports
        swept = sweep_orphans(self.chunks_dir)
        if swept:
            self.repairs.append(f"removed {swept} unfinished chunk file(s) left by a killed writer")
        self.manifest = self._open_manifest(preprocessing, dim)
        self._last_ns = 0

    @classmethod
    def for_encoder(cls, root: str | Path, encoder) -> EmbeddingStore:
        return cls(root, encoder.encoder_id, encoder.preprocessing.describe(), encoder.dim)

    # --- planning ------------------------------------------------------------------------------

    def plan(self, catalogue: pd.DataFrame, shard: tuple[int, int] | None = None) -> Plan:
        """catalogue: item_id, sha256 (+ anything, e.g. image_path, kept in to_embed).
        With shard=(i, n) only the items of shard i are considered, on both sides."""
        catalogue = catalogue.drop_duplicates("item_id", keep="first")   # the catalogue's rule
        ids = catalogue["item_id"].astype(str)
        stored = self._live_keys()
        if shard is not None:
            mine = _in_shard(ids, *shard)
            catalogue, ids = catalogue[mine], ids[mine]
            stored = stored[_in_shard(stored["item_id"], *shard)]
        stored_sha = ids.map(stored.set_index("item_id")["sha256"])
        changed = (stored_sha != catalogue["sha256"]).to_numpy()  # NaN (not stored) != anything
        gone = sorted(set(stored["item_id"]) - set(ids))
        return Plan(catalogue[changed].reset_index(drop=True), gone, int((~changed).sum()))

    # --- writing -------------------------------------------------------------------------------

    def write(self, batch) -> Path | None:
        """Append one EmbeddingBatch (item_ids, sha256, features, top_classes, top_probs)."""
        if len(batch.item_ids) == 0:
            return None
        self._remember_dim(batch.features.shape[1])
        return self._write_table(self._table(batch.item_ids, batch.sha256, batch.features,
                                             batch.top_classes, batch.top_probs))

    def writer(self, rows_per_chunk: int = CHUNK_ROWS) -> ChunkWriter:
        """Fewer, larger chunks than write(): `with store.writer() as w: w.write(batch)`."""
        return ChunkWriter(self, rows_per_chunk)

    def remove(self, item_ids) -> Path | None:
        item_ids = [str(i) for i in item_ids]
        if not item_ids:
            return None
        n = len(item_ids)
        table = pa.table({"item_id": item_ids, "sha256": pa.nulls(n, pa.string()),
                          "removed": np.ones(n, bool), "embedding": pa.nulls(n, _list(pa.float32(), self.dim)),
                          "top_classes": pa.nulls(n, _list(pa.int16(), TOP_K)),
                          "top_probs": pa.nulls(n, _list(pa.float32(), TOP_K))}, schema=self._schema())
        return self._write_table(table)

    def compact(self) -> None:
        """Merge all chunks into one: latest row per item, removed items dropped."""
        chunks = self._chunk_paths()
        keys = self._live_keys(chunks)
        if len(chunks) <= 1 and len(keys) == sum(pq.read_metadata(c).num_rows for c in chunks):
            return  # already compact
        target = None
        if len(keys):
            # Same time prefix as the newest merged chunk: chunks written later still sort after it.
            target = self.chunks_dir / f"{chunks[-1].name[:20]}-{uuid.uuid4().hex[:12]}.parquet"
            tmp = self.chunks_dir / temp_name()
            with pq.ParquetWriter(tmp, self._schema()) as out:
                for chunk, rows in keys.groupby("chunk")["row"]:
                    out.write_table(pq.read_table(chunk, memory_map=True).take(rows.to_numpy()))
            os.replace(tmp, target)
        for chunk in chunks:
            chunk.unlink()

    # --- reading -------------------------------------------------------------------------------

    def load(self, item_ids=None) -> Loaded:
        """(item_ids, features (n, dim) float32, top_classes, top_probs), sorted by item_id, or
        in the order asked for (unknown ids are skipped)."""
        keys = self._live_keys()
        if item_ids is None:
            keys = keys.sort_values("item_id", kind="stable")
        else:
            keys = keys.set_index("item_id").reindex([str(i) for i in item_ids]).dropna(subset=["row"])
            keys = keys.reset_index().astype({"row": int})
        return self._gather(keys.reset_index(drop=True))

    def aligned(self, item_ids, dim: int) -> np.ndarray:
        """(n, dim) vectors in ``item_ids`` order; zero rows for items the store does not hold."""
        ids, vectors, _, _ = self.load(item_ids)
        row = {item_id: n for n, item_id in enumerate(ids)}
        out = np.zeros((len(item_ids), dim), np.float32)
        for n, item_id in enumerate(map(str, item_ids)):
            if item_id in row:
                out[n] = vectors[row[item_id]]
        return out

    def iter_chunks(self) -> Iterator[Loaded]:
        """The live rows chunk by chunk: bounded memory for stores larger than RAM."""
        keys = self._live_keys()
        for _, group in keys.groupby("chunk"):
            yield self._gather(group.reset_index(drop=True))

    def __len__(self) -> int:
        return len(self._live_keys())

    @property
    def dim(self) -> int | None:
        if self.manifest.get("dim") is None:  # another writer may have stored vectors since
            self.manifest = json.loads((self.path / "manifest.json").read_text())
        return self.manifest.get("dim")

    # --- internals -----------------------------------------------------------------------------

    def _chunk_paths(self) -> list[Path]:
        return sorted(p for p in self.chunks_dir.glob("*.parquet") if not p.name.startswith("."))

    def _live_keys(self, chunks: list[Path] | None = None) -> pd.DataFrame:
        """item_id, sha256, chunk (its path), row: the winning row of each live item."""
        chunks = self._chunk_paths() if chunks is None else chunks
        frames = []
        for chunk in chunks:
            try:
                frame = pq.read_table(chunk, columns=["item_id", "sha256", "removed"]).to_pandas()
            except FileNotFoundError:    # compacted away by another process meanwhile
                continue
            except Exception as problem:  # pyarrow raises several types for a damaged file
                self.repairs.append(set_aside(chunk, self.path, problem))
                continue
            frames.append(frame.assign(chunk=str(chunk), row=np.arange(len(frame))))
        if not frames:
            return pd.DataFrame({"item_id": [], "sha256": [], "chunk": [], "row": []})
        keys = pd.concat(frames, ignore_index=True).drop_duplicates("item_id", keep="last")
        return keys[~keys["removed"]].drop(columns="removed")

    def _gather(self, keys: pd.DataFrame) -> Loaded:
        n, dim = len(keys), self.dim or 0
        features = np.empty((n, dim), np.float32)
        top_classes, top_probs = np.empty((n, TOP_K), np.int16), np.empty((n, TOP_K), np.float32)
        has_classes = True
        for chunk, group in keys.groupby("chunk"):
            table = pq.read_table(chunk, memory_map=True).take(group["row"].to_numpy())
            features[group.index] = _matrix(table["embedding"], dim, np.float32)
            if table["top_classes"].null_count:
                has_classes = False
                continue
            top_classes[group.index] = _matrix(table["top_classes"], TOP_K, np.int16)
            top_probs[group.index] = _matrix(table["top_probs"], TOP_K, np.float32)
        ids = keys["item_id"].to_numpy(dtype=object)
        return (ids, features, top_classes, top_probs) if has_classes and n else (ids, features, None, None)

    def _table(self, item_ids, sha256, features, top_classes, top_probs) -> pa.Table:
        n, dim = features.shape
        def fixed(values, size, dtype):
            if values is None:
                return pa.nulls(n, _list(dtype, size))
            flat = pa.array(np.ascontiguousarray(values).reshape(-1))
            return pa.FixedSizeListArray.from_arrays(flat, size).cast(_list(dtype, size))
        return pa.table({"item_id": [str(i) for i in item_ids], "sha256": list(sha256),
                         "removed": np.zeros(n, bool),
                         "embedding": fixed(features.astype(np.float32, copy=False), dim, pa.float32()),
                         "top_classes": fixed(None if top_classes is None else top_classes.astype(np.int16),
                                              TOP_K, pa.int16()),
                         "top_probs": fixed(top_probs, TOP_K, pa.float32())}, schema=self._schema())

    def _write_table(self, table: pa.Table) -> Path:
        tmp = self.chunks_dir / temp_name()
        pq.write_table(table, tmp)
        return self._publish(tmp)

    def _publish(self, tmp: Path) -> Path:
        # Named at rename time from a per-process monotonic clock: later chunks sort later.
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        target = self.chunks_dir / f"{self._last_ns:020d}-{uuid.uuid4().hex[:12]}.parquet"
        os.replace(tmp, target)
        return target

    def _schema(self) -> pa.Schema:
        return pa.schema([("item_id", pa.string()), ("sha256", pa.string()), ("removed", pa.bool_()),
                          ("embedding", _list(pa.float32(), self.dim)),
                          ("top_classes", _list(pa.int16(), TOP_K)),
                          ("top_probs", _list(pa.float32(), TOP_K))])

    def _open_manifest(self, preprocessing: dict | None, dim: int | None) -> dict:
        path = self.path / "manifest.json"
        manifest = self._read_manifest(path)
        if manifest is not None:
            if manifest["encoder_id"] != self.encoder_id:
                raise ValueError(f"{self.path} holds {manifest['encoder_id']}, not {self.encoder_id}")
            if dim is not None and manifest.get("dim") not in (None, dim):
                raise ValueError(f"{self.path} holds {manifest['dim']}-d vectors, not {dim}-d")
            if manifest.get("dim") is not None or dim is None:
                return manifest
        manifest = {"format": FORMAT_VERSION, "encoder_id": self.encoder_id,
                    "preprocessing": preprocessing, "dim": dim}
        write_atomically(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return manifest

    def _read_manifest(self, path: Path) -> dict | None:
        """The manifest, or None if there is none; a damaged one is rebuilt from the chunks."""
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text())
            manifest["encoder_id"]
            return manifest
        except (ValueError, KeyError, TypeError, OSError) as problem:
            dims = [_dim_of(c) for c in self._chunk_paths()]
            self.repairs.append(f"manifest.json was unreadable ({type(problem).__name__}); rebuilt")
            manifest = {"format": FORMAT_VERSION, "encoder_id": self.encoder_id, "preprocessing": None,
                        "dim": next((d for d in dims if d), None)}
            write_atomically(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            return manifest

    def _remember_dim(self, dim: int) -> None:
        if self.dim is None:
            self.manifest = self._open_manifest(self.manifest.get("preprocessing"), dim)
        elif self.dim != dim:
            raise ValueError(f"store {self.path} holds {self.dim}-d vectors, got {dim}-d")


class ChunkWriter:
    """Streams batches into one open chunk file (a row group each, so memory holds one batch)
    and publishes it by atomic rename every `rows_per_chunk` rows and on exit."""

    def __init__(self, store: EmbeddingStore, rows_per_chunk: int):
        self.store, self.rows_per_chunk = store, rows_per_chunk
        self._file, self._tmp, self._rows, self.written = None, None, 0, 0

    def write(self, batch) -> None:
        if not len(batch.item_ids):
            return
        self.store._remember_dim(batch.features.shape[1])
        if self._file is None:
            self._tmp = self.store.chunks_dir / temp_name()
            self._file = pq.ParquetWriter(self._tmp, self.store._schema())
        self._file.write_table(self.store._table(batch.item_ids, batch.sha256, batch.features,
                                                 batch.top_classes, batch.top_probs))
        self._rows += len(batch.item_ids)
        if self._rows >= self.rows_per_chunk:
            self.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.close()
            self.store._publish(self._tmp)
            self.written += self._rows
            self._file, self._rows = None, 0

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.flush()
        elif self._file is not None:  # a failed run publishes nothing half-done
            self._file.close()
            self._tmp.unlink(missing_ok=True)


def _list(dtype, size) -> pa.DataType:
    # Variable-size lists: pyarrow 25 cannot read back null fixed-size lists from Parquet.
    # The width (size) is enforced when reading, by reshape.
    return pa.list_(dtype)


def _matrix(column: pa.ChunkedArray, width: int, dtype) -> np.ndarray:
    values = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return values.reshape(-1, width).astype(dtype, copy=False)


def _dim_of(chunk: Path) -> int | None:
    """The vector width of a chunk's first live row (None if it has none or cannot be read)."""
    try:
        column = pq.read_table(chunk, columns=["embedding"])["embedding"].drop_null()
        return len(column[0]) if len(column) else None
    except Exception:
        return None


def _in_shard(ids: pd.Series, index: int, n_shards: int) -> np.ndarray:
    return np.fromiter((shard_of(i, n_shards) == index for i in ids), bool, len(ids))


