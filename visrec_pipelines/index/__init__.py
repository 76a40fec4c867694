"""Item vector index: Milvus is the index of record, an exact in-memory index serves queries.

Decision (measured by `python -m benchmarks.index`, 2 cores, k=10, 200 queries; ranges are over
runs with other work on the machine):

| MovieLens posters, 9,517 x 1280 | similar_items p50 / p99 | filtered p50 | recall@10 | build / refresh |
|---|---|---|---|---|
| Milvus (milvus-lite, FLAT)       | 18-37 ms / 27-73 ms     | 8-12 ms      | 1.0       | build 4.8-5.4 s |
| ExactIndex (numpy)               | 0.93 ms / 1.3-2.8 ms    | 0.5 ms       | 1.0       | .npz 0.1-0.3 s, export 2.4 s |

| synthetic 100k x 512 (clustered) | p50 / p99              | filtered p50 | recall@10 | build |
|---|---|---|---|---|
| milvus-lite FLAT                 | 113-204 ms / 182-347 ms | 52-54 ms    | 1.0       | 22-25 s |
| milvus-lite HNSW (M16, ef 128)   | 48-53 ms / 56-71 ms    | 54-58 ms     | 1.0       | 59-100 s |
| ExactIndex                       | 7-16 ms / 9-29 ms      | 0.14 ms      | 1.0       | .npz 0.7-1.5 s, export 21 s |

So serving uses `ExactIndex`: 20-40x faster than milvus-lite at catalogue size, exact, and 3-7x
faster than milvus-lite's HNSW at 100k (milvus-lite pays ~0.45 µs per stored row on every search
for its cross-segment primary-key dedup, whatever the index type, so no index gets it below ~45 ms
at 100k rows). Filters are nearly free in memory (precomputed row lists).

How it is refreshed: the job that calls `MilvusItemIndex.build` also writes
`ExactIndex(ids, vectors, categories, tags, source=<new collection>).save(path)` from the same
arrays; the server loads the .npz and swaps it in when `source` changes. This also sidesteps
milvus-lite's one-process-per-file lock (the server never opens the .db). With a Milvus server
URI, `ExactIndex.from_milvus` (query iterator) rebuilds the snapshot from the index of record.
Memory is items x dim x 4 bytes (195 MB at 100k x 512); single queries are memory-bandwidth bound
(~16 ms per 200 MB). Past ~1M items, or when the vectors no longer fit a serving worker, serve
from a Milvus server with HNSW instead. A single matrix-vector product gains little from a second
BLAS thread and suffers under CPU contention (p99 25 ms vs 6 ms with one thread at 9.5k x 1280):
serving workers should run with OPENBLAS_NUM_THREADS=1.
"""
from visrec_pipelines.index.exact import ExactIndex, unit_rows

__all__ = ["ExactIndex", "MilvusItemIndex", "unit_rows"]


def __getattr__(name: str):
    # Lazy: serving needs only ExactIndex and should not pay pymilvus's import (~0.4 s).
    if name == "MilvusItemIndex":
        from visrec_pipelines.index.milvus_index import MilvusItemIndex
        return MilvusItemIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
