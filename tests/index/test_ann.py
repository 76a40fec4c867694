"""The inverted-file index behind large catalogues' serving: probes tuned to a recall, filters as
bitmaps, stored with the snapshot, and a scan whenever it cannot answer."""
import numpy as np
import pytest

from visrec_pipelines.index import neighbours
from visrec_pipelines.index.ann import Filter, IVFIndex
from visrec_pipelines.index.exact import ExactIndex, top_k
from visrec_pipelines.serving.similar import RowFilter, SimilarItems


def clustered(n=4000, dim=32, clusters=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def recall(found, exact) -> float:
    return float(np.mean([len(np.intersect1d(f, e)) / len(e) for f, e in zip(found, exact)]))


def test_probes_grow_until_the_exact_top_k_is_recalled():
    vectors = clustered()
    ivf = IVFIndex(vectors)
    ivf.nprobe = 1                                           # start too low on purpose
    queries = vectors[::40]
    reached = ivf.tune(queries, k=20, target=0.95)
    assert reached >= 0.95 and ivf.nprobe > 1 and ivf.recall == reached
    exact = top_k(queries @ vectors.T, 20)
    found = [ivf.search(q, 20)[0] for q in queries]
    assert recall(found, exact) >= 0.95
    assert IVFIndex(vectors).tune(queries, k=20, target=1.01) <= 1.0       # unreachable: every list, then stop


def test_a_filter_returns_only_its_rows_and_ids_map_back():
    vectors = clustered()
    shown = np.flatnonzero(np.arange(len(vectors)) % 3 != 0)            # an IVF over some rows only
    ivf = IVFIndex(vectors[shown], ids=shown)
    ivf.tune(vectors[shown[::50]], k=10)
    rows, scores = ivf.search(vectors[5], 10)
    assert set(rows) <= set(shown) and np.allclose(scores, vectors[rows] @ vectors[5], atol=1e-5)
    even = np.zeros(len(vectors), dtype=bool)
    even[::2] = True
    rows, _ = ivf.search(vectors[5], 10, Filter(even))
    assert len(rows) == 10 and even[rows].all() and set(rows) <= set(shown)


def test_the_snapshot_carries_the_ivf_and_similar_items_search_with_it(tmp_path, monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_MAX_ITEMS", 1000)          # a "large" catalogue of 4k
    vectors = clustered()
    tags = [["even"] if i % 2 == 0 else ["odd"] for i in range(len(vectors))]
    snapshot = ExactIndex([f"i{i}" for i in range(len(vectors))], vectors, tags=tags)
    neighbours.prepare_snapshot(snapshot)
    loaded = ExactIndex.load(snapshot.save(tmp_path / "snapshot.npz"))
    assert loaded.ivf is not None and loaded.neighbours is not None
    similar = SimilarItems(loaded, neighbours=20, table_max_items=100)
    assert similar.ann is not None and similar.ann.recall >= 0.95 and similar.problem is None
    assert loaded.ivf is None                      # faiss holds the index: its bytes are not kept twice
    scanned = []
    monkeypatch.setattr(similar, "_scan", lambda *a, **k: scanned.append(a) or (np.empty(0, int), np.empty(0)))
    rare = np.zeros(len(vectors), dtype=bool)
    rare[::2] = True
    queries = np.arange(1, 400, 2)                 # odd items asking for even neighbours: few in their table
    found = [similar.similar_rows(int(q), k=30, allowed=RowFilter(rare, np.flatnonzero(rare)))[0] for q in queries]
    assert not scanned and all(rare[f].all() and len(f) == 30 for f in found)
    exact = [[loaded.row_of(i) for i, _ in loaded.similar_items(f"i{q}", k=30, tags=["even"])] for q in queries]
    assert recall(found, exact) >= 0.9
    picture, _ = similar.search_rows(vectors[3] + 0.01, k=10)
    assert picture[0] == 3 and not scanned


def test_a_tiny_filter_still_gets_all_its_rows_and_a_damaged_ivf_falls_back_to_the_exact_scan(monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_MAX_ITEMS", 1000)
    vectors = clustered()
    snapshot = ExactIndex([f"i{i}" for i in range(len(vectors))], vectors)
    neighbours.prepare_snapshot(snapshot)
    stored = snapshot.ivf
    similar = SimilarItems(snapshot, neighbours=20, table_max_items=100)
    few = np.zeros(len(vectors), dtype=bool)
    few[[10, 2000, 3999]] = True                    # three rows far apart: probes grow to reach them
    rows, _ = similar.similar_rows(0, k=10, allowed=RowFilter(few, np.flatnonzero(few)))
    assert sorted(rows.tolist()) == [10, 2000, 3999]
    snapshot.ivf = stored[: len(stored) // 2]                              # truncated on disk
    damaged = SimilarItems(snapshot, neighbours=20, table_max_items=100)
    assert damaged.ann is None and "cannot be used" in damaged.problem
    rows, _ = damaged.search_rows(vectors[7], k=5)
    assert rows[0] == 7


@pytest.mark.parametrize("n", [500, 4000])
def test_only_catalogues_above_the_limit_carry_an_ivf(n, monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_MAX_ITEMS", 1000)
    snapshot = ExactIndex([f"i{i}" for i in range(n)], clustered(n))
    neighbours.prepare_snapshot(snapshot)
    assert (snapshot.ivf is not None) == (n > 1000) and (snapshot.neighbours is not None) == (n > 1000)


def test_a_filter_far_from_the_query_is_searched_where_its_rows_are_not_scanned(monkeypatch):
    """The rows least like an item (a colour its neighbourhood lacks) sit in none of the lists
    nearest it: the lists probed are the nearest that hold the filter's rows, so k of them come
    back without a scan, mostly the filter's exact best; every list holding them is exact."""
    monkeypatch.setattr(neighbours, "EXACT_MAX_ITEMS", 1000)
    vectors = clustered(clusters=40)
    snapshot = ExactIndex([f"i{i}" for i in range(len(vectors))], vectors)
    neighbours.prepare_snapshot(snapshot)
    similar = SimilarItems(snapshot, neighbours=20, table_max_items=100)
    ann = similar.ann
    scanned = []
    monkeypatch.setattr(similar, "_scan", lambda *a, **k: scanned.append(a) or (np.empty(0, int), np.empty(0)))
    found, exact = [], []
    for query in range(0, 200, 10):
        far = np.sort(np.argsort(vectors @ vectors[query])[:300])
        mask = np.zeros(len(vectors), dtype=bool)
        mask[far] = True
        own_lists = np.argsort(-(ann.centroids @ vectors[query]))[:ann.nprobe]
        assert not np.isin(ann.list_of[far], own_lists).any()         # the usual probes hold none
        rows, scores = similar.similar_rows(query, k=10, allowed=RowFilter(mask, far))
        assert len(rows) == 10 and mask[rows].all()
        assert np.allclose(scores, vectors[rows] @ vectors[query], atol=1e-5)
        best = far[top_k((vectors[far] @ vectors[query])[None, :], 10)[0]]
        found.append(rows)
        exact.append(best)
        everywhere, _ = ann.search(vectors[query], 10, Filter(mask), everywhere=True)
        assert everywhere.tolist() == best.tolist()
    assert not scanned and recall(found, exact) >= 0.7


def test_probes_shrink_when_fewer_recall_enough():
    vectors = clustered(clusters=20, dim=16)
    ivf = IVFIndex(vectors)
    ivf.nprobe = 64
    reached = ivf.tune(vectors[::40], k=10, target=0.9)
    assert reached >= 0.9 and ivf.nprobe < 64
    assert ivf.tune(vectors[::40], k=10, target=0.9) == reached      # tuning again changes nothing


def test_a_compacted_index_reads_float16_codes_and_still_answers_exact_scores(tmp_path, monkeypatch):
    """The snapshot's IVF keeps float16 codes (half the bytes a probe reads); the rows found are
    the full-precision index's, and the scores are re-computed from the vectors, exactly."""
    vectors = clustered(dim=64)
    flat = IVFIndex(vectors)
    flat.tune(vectors[::40], k=10)
    half = IVFIndex.from_bytes(flat.to_bytes(), vectors).compact()
    half.nprobe = flat.nprobe
    assert flat.exact_codes and not half.exact_codes
    assert len(half.to_bytes()) < 0.6 * len(flat.to_bytes())
    assert half.list_of.tolist() == flat.list_of.tolist()              # same lists: tuning stands
    odd = np.zeros(len(vectors), dtype=bool)
    odd[1::2] = True
    for query in vectors[:60]:
        for allowed, everywhere in ((None, False), (Filter(odd), False), (Filter(odd), True)):
            rows, scores = half.search(query, 10, allowed, everywhere)
            expected, _ = flat.search(query, 10, allowed, everywhere)
            assert np.allclose(scores, vectors[rows] @ query, atol=1e-6)     # exact, best first
            assert np.all(np.diff(scores) <= 0)
            assert len(np.intersect1d(rows, expected)) >= 9              # a float16 tie may swap the 10th

    monkeypatch.setattr(neighbours, "EXACT_MAX_ITEMS", 1000)
    snapshot = ExactIndex([f"i{i}" for i in range(len(vectors))], vectors)
    neighbours.prepare_snapshot(snapshot)
    stored = IVFIndex.from_bytes(ExactIndex.load(snapshot.save(tmp_path / "s.npz")).ivf, vectors)
    assert not stored.exact_codes
    rows, scores = snapshot.neighbours
    found = rows[:50, :5]
    assert np.allclose(scores[:50, :5], np.einsum("nd,nkd->nk", vectors[:50], vectors[found]), atol=1e-6)


def test_compact_refuses_ids_it_could_not_map_back():
    vectors = clustered(n=2000, dim=16)
    with pytest.raises(ValueError, match="increasing"):
        IVFIndex(vectors, ids=np.arange(len(vectors))[::-1].copy()).compact()


@pytest.mark.parametrize("partition_from", [0, 10**6])
def test_the_nearest_lists_holding_enough_rows_are_the_best_scored_prefix(partition_from, monkeypatch):
    from visrec_pipelines.index import ann

    monkeypatch.setattr(ann, "PARTITION_MIN_LISTS", partition_from)    # both ways of finding them
    rng = np.random.default_rng(3)
    for lists in (5, 60, 3000):
        scores = rng.normal(size=lists).astype(np.float32)
        held = rng.integers(0, 50, lists)
        for enough in (1.0, 300.0, float(held.sum()), 10.0 * held.sum()):
            order = np.argsort(-scores, kind="stable")
            prefix = int(np.searchsorted(np.cumsum(held[order]), enough)) + 1
            assert ann._nearest_holding(scores, held, enough).tolist() == order[:prefix].tolist()
