import numpy as np
import pytest

from visrec_pipelines.index.exact import ExactIndex, top_k, unit_rows


def catalogue(n=400, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    vectors = unit_rows(rng.normal(size=(n, dim)))
    ids = [f"item{i}" for i in range(n)]
    categories = [("shoes", "bags", "")[i % 3] for i in range(n)]
    tags = [[t for t, every in (("red", 2), ("leather", 5), ("sale", 7)) if i % every == 0] for i in range(n)]
    return ids, vectors, categories, tags


def brute_force(vectors, query, rows, k, exclude=None):
    rows = [r for r in rows if r != exclude]
    scores = vectors[rows] @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [rows[i] for i in order]


def assert_same_neighbours(got, expected):
    """Same items in the same order; scores equal up to float32 rounding (gemm vs gemv)."""
    assert [[i for i, _ in hits] for hits in got] == [[i for i, _ in hits] for hits in expected]
    np.testing.assert_allclose([s for hits in got for _, s in hits],
                               [s for hits in expected for _, s in hits], atol=1e-5)


def test_search_vector_equals_brute_force():
    ids, vectors, categories, tags = catalogue()
    index = ExactIndex(ids, vectors, categories, tags)
    query = unit_rows(np.random.default_rng(1).normal(size=(1, 24)))[0]
    for k in (1, 10, 50):
        got = [item for item, _ in index.search_vector(query, k)]
        assert got == [ids[r] for r in brute_force(vectors, query, range(len(ids)), k)]
    assert len(index.search_vector(query, 10_000)) == len(ids)  # k larger than the catalogue
    scores = [s for _, s in index.search_vector(query, 5)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(float(np.max(vectors @ query)), abs=1e-6)


def test_filters_match_brute_force_on_the_filtered_rows():
    ids, vectors, categories, tags = catalogue()
    index = ExactIndex(ids, vectors, categories, tags)
    query = vectors[3]
    cases = [("shoes", None), (None, ["red"]), ("bags", ["red", "leather"]), ("", "sale")]
    for category, must_have in cases:
        wanted = set([must_have] if isinstance(must_have, str) else must_have or [])
        rows = [r for r in range(len(ids))
                if (category is None or categories[r] == category) and wanted <= set(tags[r])]
        got = index.search_vector(query, 10, category=category, tags=must_have)
        assert [item for item, _ in got] == [ids[r] for r in brute_force(vectors, query, rows, 10)]
    assert index.search_vector(query, 10, category="no such category") == []
    assert index.search_vector(query, 10, tags=["red", "no such tag"]) == []


def test_similar_items_excludes_self_and_honours_filters():
    ids, vectors, categories, tags = catalogue()
    index = ExactIndex(ids, vectors, categories, tags)
    got = index.similar_items("item0", 10)
    assert "item0" not in [item for item, _ in got] and len(got) == 10
    assert [item for item, _ in got] == [ids[r] for r in brute_force(vectors, vectors[0], range(400), 10, exclude=0)]
    # item0 is a red shoe: excluded from its own filtered neighbours; item1 is not red: filter still applies
    for item in ("item0", "item1"):
        got = index.similar_items(item, 5, category="shoes", tags=["red"])
        assert item not in [i for i, _ in got] and len(got) == 5
        assert all(categories[ids.index(i)] == "shoes" and "red" in tags[ids.index(i)] for i, _ in got)


def test_batched_queries_equal_single_queries():
    ids, vectors, categories, tags = catalogue()
    index = ExactIndex(ids, vectors, categories, tags)
    batch = index.similar_items_batch(ids[:30], 7, tags="red")
    assert_same_neighbours(batch, [index.similar_items(i, 7, tags="red") for i in ids[:30]])
    queries = vectors[:20] + 0.1
    assert_same_neighbours(index.search_vectors(queries, 4, batch_size=3),
                           [index.search_vector(q, 4) for q in queries])


def test_unknown_item_raises_key_error():
    ids, vectors, categories, tags = catalogue(n=10)
    with pytest.raises(KeyError, match="'missing' is not in the index"):
        ExactIndex(ids, vectors, categories, tags).similar_items("missing")


def test_save_and_load_round_trip(tmp_path):
    ids, vectors, categories, tags = catalogue(n=50)
    index = ExactIndex(ids, vectors * 3, categories, tags, source="visrec_items_x")  # normalised on the way in
    path = index.save(tmp_path / "serving" / "index.npz")
    loaded = ExactIndex.load(path)
    assert loaded.source == "visrec_items_x" and loaded.item_ids.tolist() == ids
    assert loaded.tags == tags and loaded.categories.tolist() == categories
    np.testing.assert_allclose(loaded.vectors, vectors, atol=1e-6)
    assert_same_neighbours([loaded.similar_items("item4", 5, tags="red")],
                           [index.similar_items("item4", 5, tags="red")])


def test_input_validation():
    with pytest.raises(ValueError, match="unique"):
        ExactIndex(["a", "a"], np.eye(2))
    with pytest.raises(ValueError, match="2 item ids but 3 vectors"):
        ExactIndex(["a", "b"], np.eye(3))
    assert top_k(np.array([[0.1, 0.9, 0.5]]), 2).tolist() == [[1, 2]]
    np.testing.assert_allclose(unit_rows([[0.0, 0.0], [3.0, 4.0]]), [[0, 0], [0.6, 0.8]], rtol=1e-6)
