"""Item index benchmark: Milvus (milvus-lite, the index of record) vs the exact in-memory index.

    python -m benchmarks.index [--vectors item_vectors.npz] [--synthetic-n 100000] [--synthetic-dim 512]

(1) MovieLens poster catalogue (items with a poster; first genre = category, genres = tags) with real
embeddings from --vectors (.npz: item_ids, vectors), else from the pipeline's serving snapshot
`<warehouse>/movielens/item_index.npz` (the item_index asset's ExactIndex.save, same keys) if it
exists, else seeded random unit vectors of dim 1280 (the encoder's).
(2) Synthetic clustered unit vectors. For each: build time, similar-items latency p50/p99, recall@10
against exact numpy search. Prints a table, then one JSON line (last line of output).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from visrec_pipelines.index import ExactIndex, MilvusItemIndex, unit_rows
from visrec_pipelines.settings import Settings

MOVIELENS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "movielens-small"
K = 10


def movielens_catalogue(root: Path, vectors_npz: Path | None, dim: int = 1280, seed: int = 0):
    movies = pd.read_csv(root / "movies.csv", dtype=str, keep_default_na=False)
    with_poster = {p.stem for p in (root / "posters").glob("*.jpg")}
    movies = movies[movies["item_id"].isin(with_poster)] if with_poster else movies
    genres = [[g for g in s.split("|") if g and g != "(no genres listed)"] for s in movies["genres"]]
    meta = dict(zip(movies["item_id"], zip([g[0] if g else "" for g in genres], genres, movies["title"])))
    if vectors_npz:
        with np.load(vectors_npz, allow_pickle=False) as data:
            ids, vectors = [str(i) for i in data["item_ids"]], data["vectors"]
        source = str(vectors_npz)
    else:
        ids = list(meta)
        vectors = np.random.default_rng(seed).normal(size=(len(ids), dim)).astype(np.float32)
        source = f"random unit vectors, dim {dim}, seed {seed}"
    cats, tags, titles = zip(*(meta.get(i, ("", [], "")) for i in ids))
    return ids, unit_rows(vectors), list(cats), list(tags), list(titles), source


def synthetic_catalogue(n: int, dim: int, seed: int = 1):
    """Clustered unit vectors (2,000 centres + noise), closer to real embeddings than pure noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    vectors = unit_rows(centres[rng.integers(0, 2000, n)] + 0.8 * rng.normal(size=(n, dim)).astype(np.float32))
    ids = [f"s{i}" for i in range(n)]
    cats = [f"cat{c}" for c in rng.integers(0, 20, n)]
    tags = [[f"tag{t}" for t in rng.choice(50, 3, replace=False)] for _ in range(n)]
    return ids, vectors, cats, tags, [""] * n


def exact_truth(vectors: np.ndarray, rows: np.ndarray) -> list[set[int]]:
    scores = vectors[rows] @ vectors.T
    scores[np.arange(len(rows)), rows] = -np.inf  # an item is not its own neighbour
    return [set(np.argpartition(-s, K)[:K].tolist()) for s in scores]


def measure(similar, ids: list[str], rows: np.ndarray, truth: list[set[int]], **filters) -> dict:
    similar(ids[rows[0]], K, **filters)  # warm-up (first call pays connection/cache set-up)
    position = {item: r for r, item in enumerate(ids)}
    times, hits = [], []
    for row, true in zip(rows, truth):
        start = time.perf_counter()
        got = similar(ids[row], K, **filters)
        times.append((time.perf_counter() - start) * 1000)
        if not filters:
            hits.append(len({position[i] for i, _ in got} & true) / K)
    result = {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2)}
    if hits:
        result["recall_at_10"] = round(float(np.mean(hits)), 4)
    return result


def search_vector_p50(search, queries: np.ndarray) -> float:
    """The search-by-image path: one query vector in, k neighbours out (no id lookup)."""
    search(queries[0], K)
    times = []
    for query in queries:
        start = time.perf_counter()
        search(query, K)
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.percentile(times, 50)), 2)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, round(time.perf_counter() - start, 3)


def bench_catalogue(db: Path, ids, vectors, cats, tags, titles, queries: int, index_types=("FLAT",), seed=2) -> dict:
    rows = np.random.default_rng(seed).choice(len(ids), size=min(queries, len(ids)), replace=False)
    truth = exact_truth(vectors, rows)
    filt = {"category": cats[rows[0]], "tags": tags[rows[0]][-1:]}  # a realistic category + tag filter
    near = vectors[rows[:50]]  # "photos" of catalogue items: their vectors plus a little noise
    photos = unit_rows(near + np.random.default_rng(seed).normal(0, 0.02, near.shape))
    out = {}
    with MilvusItemIndex(str(db), alias="bench_items") as milvus:
        for index_type in index_types:
            _, build_s = timed(milvus.build, ids, vectors, cats, tags, titles, index_type=index_type)
            first_s = timed(milvus.similar_items, ids[rows[0]], K)[1]  # right after the build
            stats = {"index_type": index_type, "build_s": build_s, "first_query_ms": round(first_s * 1000, 1)}
            stats.update(measure(milvus.similar_items, ids, rows, truth))
            stats["filtered_p50_ms"] = measure(milvus.similar_items, ids, rows[:50], truth[:50], **filt)["p50_ms"]
            stats["search_vector_p50_ms"] = search_vector_p50(milvus.search_vector, photos)
            out[f"milvus_{index_type.lower()}"] = stats
        exact, refresh_s = timed(ExactIndex.from_milvus, milvus)
    _, arrays_s = timed(ExactIndex, ids, vectors, cats, tags)
    npz = exact.save(db.parent / "exact_index.npz")
    _, npz_s = timed(ExactIndex.load, npz)
    stats = {"refresh_from_milvus_s": refresh_s, "from_arrays_s": arrays_s, "npz_load_s": npz_s,
             "memory_mb": round(exact.vectors.nbytes / 2**20, 1)}
    stats.update(measure(exact.similar_items, ids, rows, truth))
    stats["filtered_p50_ms"] = measure(exact.similar_items, ids, rows[:50], truth[:50], **filt)["p50_ms"]
    stats["search_vector_p50_ms"] = search_vector_p50(exact.search_vector, photos)
    _, batch_s = timed(exact.similar_items_batch, [ids[r] for r in rows], K)
    stats["batched_ms_per_query"] = round(batch_s * 1000 / len(rows), 2)
    out["exact"] = stats
    return out


def print_table(title: str, results: dict) -> None:
    keys = ["build_s", "refresh_from_milvus_s", "p50_ms", "p99_ms", "recall_at_10", "filtered_p50_ms",
            "search_vector_p50_ms", "first_query_ms", "batched_ms_per_query", "memory_mb"]
    table = [[name] + [stats.get(k, "") for k in keys] for name, stats in results.items()]
    print(f"\n{title}\n" + tabulate(table, headers=["index"] + keys, tablefmt="github"))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, help=".npz with item_ids and vectors (real embeddings)")
    parser.add_argument("--movielens", type=Path, default=MOVIELENS)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--synthetic-n", type=int, default=100_000, help="0 skips the synthetic run")
    parser.add_argument("--synthetic-dim", type=int, default=512)
    parser.add_argument("--no-hnsw", action="store_true", help="synthetic run: FLAT only")
    args = parser.parse_args(argv)
    snapshot = Settings().warehouse_for("movielens").item_index_snapshot
    vectors_npz = args.vectors or (snapshot if snapshot.is_file() else None)

    load_before = os.getloadavg()[0]  # other work on the 2 cores skews latencies: make it visible
    work = Path(tempfile.mkdtemp(prefix="visrec-index-bench-"))
    try:
        ids, vectors, cats, tags, titles, source = movielens_catalogue(args.movielens, vectors_npz)
        print(f"MovieLens catalogue: {len(ids)} items, dim {vectors.shape[1]}, vectors: {source}")
        movielens = bench_catalogue(work / "ml" / "milvus.db", ids, vectors, cats, tags, titles, args.queries)
        print_table(f"MovieLens ({len(ids)} items), similar_items k={K}, {args.queries} queries", movielens)
        synthetic = {}
        if args.synthetic_n:
            data = synthetic_catalogue(args.synthetic_n, args.synthetic_dim)
            types = ("FLAT",) if args.no_hnsw else ("FLAT", "HNSW")
            synthetic = bench_catalogue(work / "syn" / "milvus.db", *data, args.queries, index_types=types)
            synthetic.update({"n": args.synthetic_n, "dim": args.synthetic_dim, "vectors": "clustered synthetic"})
            print_table(f"Synthetic {args.synthetic_n} x {args.synthetic_dim} (clustered)",
                        {k: v for k, v in synthetic.items() if isinstance(v, dict)})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    milvus, exact = movielens["milvus_flat"], movielens["exact"]
    summary = {
        "serving_path": "exact (in-memory ExactIndex refreshed from the Milvus FLAT collection)",
        "build_s": round(milvus["build_s"] + exact["refresh_from_milvus_s"], 2),  # Milvus build + refresh
        "recall_at_10": exact["recall_at_10"], "p50_ms": exact["p50_ms"], "p99_ms": exact["p99_ms"],
        "catalogue": {"items": len(ids), "dim": int(vectors.shape[1]), "vectors": source},
        "milvus": milvus, "exact": exact, "synthetic_100k": synthetic,
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
