"""MilvusItemIndex on a milvus-lite file per test (small vectors, a few seconds in all)."""
import subprocess
import sys
import threading

import numpy as np
import pytest

from visrec_pipelines.index import ExactIndex, MilvusItemIndex, milvus_index, unit_rows

DIM = 16


def catalogue(n=300, seed=0):
    vectors = unit_rows(np.random.default_rng(seed).normal(size=(n, DIM)))
    ids = [f"item{i}" for i in range(n)]
    categories = [("shoes", "bags", "")[i % 3] for i in range(n)]
    tags = [[t for t, every in (("red", 2), ("50%_off", 5)) if i % every == 0] for i in range(n)]
    titles = [f'Item "{i}"' for i in range(n)]
    return ids, vectors, categories, tags, titles


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "milvus.db")


@pytest.fixture
def index(db_path):
    idx = MilvusItemIndex(db_path, alias="items")
    yield idx
    idx.close()  # milvus-lite holds a per-file lock until its in-process server stops


@pytest.fixture
def built(index):
    data = catalogue()
    index.build(*data)
    return index, data


def test_rebuild_switches_alias_and_keeps_the_last_two(index):
    ids, vectors, categories, tags, titles = catalogue()
    assert index.current_collection() is None and index.count() == 0
    names = []
    for seed in range(3):
        names.append(index.build(ids, unit_rows(vectors + seed), categories, tags, titles))
        assert index.current_collection() == names[-1]
        assert index.count() == len(ids)
        assert index.similar_items("item0", 3)[0][0] != "item0"
    assert index.collections() == names[-2:]  # the oldest is dropped, the previous kept for rollback


def test_queries_keep_working_during_a_rebuild(db_path, index):
    data = catalogue()
    index.build(*data)
    errors, answered, stop = [], [], threading.Event()

    def read():
        with MilvusItemIndex(db_path, alias="items") as reader:
            while not stop.is_set():
                try:
                    answered.append(len(reader.similar_items("item7", 5)))
                except Exception as e:  # noqa: BLE001 — any failure is what this test looks for
                    errors.append(e)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for _ in range(2):
            index.build(*data)
    finally:
        stop.set()
        thread.join()
    assert errors == [] and answered and set(answered) == {5}


def test_readers_follow_the_index_type_of_the_live_collection(db_path, index, monkeypatch):
    data = catalogue()
    index.build(*data)
    with MilvusItemIndex(db_path, alias="items") as reader:  # e.g. the serving process
        reader.similar_items("item0", 3)
        assert reader._index_type == "FLAT"
        index.build(*data, index_type="HNSW")  # HNSW needs its own search parameters (ef)
        monkeypatch.setattr(milvus_index, "INDEX_TYPE_TTL_S", 0.0)
        assert len(reader.similar_items("item0", 3)) == 3 and reader._index_type == "HNSW"


def test_failed_build_leaves_the_live_index_alone(built):
    index, (ids, vectors, categories, tags, titles) = built
    live = index.current_collection()
    with pytest.raises(ValueError, match="may not contain"):
        index.build(ids, vectors, categories, [["a|b"]] * len(ids), titles)
    with pytest.raises(ValueError, match="cannot build IVF_PQ"):  # lite "builds" it, then scans everything
        index.build(ids, vectors, categories, tags, titles, index_type="IVF_PQ")
    assert index.current_collection() == live and index.collections() == [live]


def test_similar_items_excludes_self_and_honours_filters(built):
    index, (ids, vectors, categories, tags, titles) = built
    exact = ExactIndex(ids, vectors, categories, tags)
    for item in ("item0", "item1"):  # item0 passes the filters itself, item1 does not
        for category, must_have in [(None, None), ("shoes", None), (None, ["red"]), ("shoes", ["red", "50%_off"])]:
            got = index.similar_items(item, 5, category=category, tags=must_have)
            assert item not in [i for i, _ in got]
            assert [i for i, _ in got] == [i for i, _ in exact.similar_items(item, 5, category, must_have)]
            for neighbour, _ in got:
                row = ids.index(neighbour)
                assert category is None or categories[row] == category
                assert set(must_have or []) <= set(tags[row])
    # "_" and "%" in a tag are literal, not LIKE wildcards
    assert index.similar_items("item0", 5, tags=["50x_off"]) == []


def test_unknown_item_raises_key_error(built):
    index, _ = built
    with pytest.raises(KeyError, match="'nope' is not in the Milvus index 'items'"):
        index.similar_items("nope")


def test_flat_recall_at_10_is_exact(built):
    index, (ids, vectors, *_ ) = built
    queries = unit_rows(np.random.default_rng(7).normal(size=(20, DIM)))
    for query in queries:
        truth = {ids[r] for r in np.argsort(-(vectors @ query))[:10]}
        got = index.search_vector(query, 10)
        assert {i for i, _ in got} == truth
        assert got[0][1] == pytest.approx(float(np.max(vectors @ query)), abs=1e-5)


def test_hnsw_build_answers_with_high_recall(index):
    ids, vectors, categories, tags, titles = catalogue()
    index.build(ids, vectors, categories, tags, titles, index_type="HNSW")
    queries = unit_rows(np.random.default_rng(8).normal(size=(20, DIM)))
    recall = np.mean([len({i for i, _ in index.search_vector(q, 10)}
                          & {ids[r] for r in np.argsort(-(vectors @ q))[:10]}) / 10 for q in queries])
    assert recall >= 0.95


def test_exact_index_from_milvus_is_the_live_collection(built):
    index, (ids, vectors, categories, tags, _) = built
    exact = ExactIndex.from_milvus(index, batch_size=64)
    assert exact.source == index.current_collection() and len(exact) == len(ids)
    row = exact.row_of("item10")
    np.testing.assert_allclose(exact.vectors[row], vectors[10], atol=1e-6)
    assert exact.categories[row] == categories[10] and exact.tags[row] == tags[10]


def test_upsert_and_delete_touch_the_live_collection(built):
    index, (ids, vectors, *_ ) = built
    index.upsert(["new"], vectors[:1], ["shoes"], [["red"]], ["New"])
    assert index.count() == len(ids) + 1
    assert index.similar_items("new", 1)[0][0] == "item0"  # same vector
    index.delete(["new"])
    assert index.count() == len(ids)


def test_close_releases_the_file_for_another_process(db_path, built):
    index, _ = built
    index.close()
    script = ("import sys; from visrec_pipelines.index import MilvusItemIndex\n"
              "with MilvusItemIndex(sys.argv[1], alias='items') as i: print(i.count())")
    result = subprocess.run([sys.executable, "-c", script, db_path], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "300"


def test_export_after_reopening_the_file(db_path, built):
    """A reopened milvus-lite file has its collections released; export loads what it reads."""
    index, (ids, vectors, *_rest) = built
    index.close()
    with MilvusItemIndex(db_path, alias="items") as reopened:
        _, exported_ids, exported, _, _ = reopened.export()
    order = np.argsort(exported_ids)
    assert sorted(exported_ids) == sorted(ids)
    assert np.allclose(exported[order], vectors[np.argsort(ids)], atol=1e-6)


def test_ranker_vectors_keep_their_length(index):
    """normalise=False: item vectors of a ranker, whose inner product with a user is the score."""
    rng = np.random.default_rng(1)
    items = rng.normal(size=(50, DIM)).astype(np.float32) * rng.uniform(0.1, 5, (50, 1)).astype(np.float32)
    index.build([f"i{n}" for n in range(50)], items, normalise=False)
    user = rng.normal(size=DIM).astype(np.float32)
    best = [item_id for item_id, _ in index.search_vector(user, k=5)]
    assert best == [f"i{n}" for n in np.argsort(-(items @ user))[:5]]
