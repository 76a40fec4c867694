"""Precomputed neighbour tables: exact for small catalogues, an inverted file for large ones, stored
with the snapshot so serving does not compute them at start."""
import numpy as np

from visrec_pipelines.index.exact import ExactIndex
from visrec_pipelines.index.neighbours import approximate_table, exact_table, neighbour_table
from visrec_pipelines.serving.similar import RowFilter, SimilarItems


def clustered(n=3000, dim=32, clusters=30, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(clusters, size=n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_approximate_table_finds_nearly_all_exact_neighbours_and_never_the_item_itself():
    vectors = clustered()
    exact_rows, exact_scores = exact_table(vectors, 50)
    rows, scores = approximate_table(vectors, 50)
    assert rows.shape == (3000, 50) and not (rows == np.arange(3000)[:, None]).any()
    assert np.all(np.diff(scores, axis=1) <= 1e-6)                           # best first
    recall = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(rows, exact_rows)])
    assert recall > 0.9
    found = rows >= 0
    true_scores = np.einsum("nd,nkd->nk", vectors, vectors[np.where(found, rows, 0)])
    np.testing.assert_allclose(scores[found], true_scores[found], rtol=1e-4, atol=1e-5)
    assert neighbour_table(vectors, 10, exact_max_items=5000)[0].tolist() == exact_table(vectors, 10)[0].tolist()


def test_a_stored_table_serves_similar_items_above_the_size_serving_computes(tmp_path):
    vectors = clustered(n=600)
    ids = [f"i{i}" for i in range(600)]
    tags = [["even"] if i % 2 == 0 else [] for i in range(600)]
    index = ExactIndex(ids, vectors, tags=tags, source="v1", neighbours=exact_table(vectors, 120))
    loaded = ExactIndex.load(index.save(tmp_path / "snapshot.npz"))
    assert loaded.neighbours is not None and loaded.neighbours[0].shape == (600, 120)

    similar = SimilarItems(loaded, neighbours=400, table_max_items=100)       # would not compute one itself
    assert similar.table_size == 120
    rows, _ = similar.similar_rows(7, k=10)
    expected = [int(loaded.row_of(i)) for i, _ in loaded.similar_items("i7", k=10)]
    assert rows.tolist() == expected
    allowed = np.array([i % 2 == 0 for i in range(600)])
    filtered, _ = similar.similar_rows(7, k=10, allowed=RowFilter(allowed, np.flatnonzero(allowed)))
    assert filtered.tolist() == [int(loaded.row_of(i)) for i, _ in loaded.similar_items("i7", k=10, tags=["even"])]

    unfinished = (loaded.neighbours[0].copy(), loaded.neighbours[1].copy())
    unfinished[0][7, 5:] = -1                          # an approximate row that ended early: exact scan
    unfinished[1][7, 5:] = -np.inf
    rows, _ = SimilarItems(ExactIndex(ids, vectors, tags=tags, neighbours=unfinished), table_max_items=100
                           ).similar_rows(7, k=10)
    assert rows.tolist() == expected
