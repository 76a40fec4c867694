"""Embedding store: incremental plans, removals, compaction, shard writers sharing one store."""
import hashlib
import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.vision.embedding_store import EmbeddingStore, shard_of
from visrec_pipelines.vision.embedding_stream import embed_images
from visrec_pipelines.vision.encoders import build_encoder

DIM = 8


def _batch(item_ids, seed=0, version="v1"):
    """A synthetic EmbeddingBatch (what embed_images yields), no model needed."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(len(item_ids), DIM)).astype(np.float32)
    probs = np.sort(rng.random((len(item_ids), 10)).astype(np.float32), axis=1)[:, ::-1]
    return SimpleNamespace(item_ids=list(item_ids), sha256=[f"{i}-{version}" for i in item_ids],
                           features=features / np.linalg.norm(features, axis=1, keepdims=True),
                           top_classes=rng.integers(0, 1000, (len(item_ids), 10)).astype(np.int16),
                           top_probs=np.ascontiguousarray(probs), failures=[])


def _assert_same_load(a, b):
    assert list(a[0]) == list(b[0])
    for left, right in zip(a[1:], b[1:]):
        np.testing.assert_array_equal(left, right)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return build_encoder(cache_dir=tmp_path_factory.getbasetemp() / "visrec-cache")


def test_incremental_plan_on_real_images(encoder, tmp_path):
    demo = generate_demo(tmp_path / "demo", n_items=8, n_users=2, seed=0)
    paths = {i: demo.image_file(p) for i, p in demo.read_items()[["item_id", "image_path"]].values}
    store = EmbeddingStore.for_encoder(tmp_path / "store", encoder)

    def catalogue(ids):
        return pd.DataFrame({"item_id": ids, "image_path": [paths[i] for i in ids],
                             "sha256": [hashlib.sha256(paths[i].read_bytes()).hexdigest() for i in ids]})

    def run(ids):
        plan = store.plan(catalogue(ids))
        for batch in embed_images(plan.to_embed[["item_id", "image_path"]].values, encoder, batch_size=4):
            store.write(batch)
        store.remove(plan.to_remove)
        return plan

    ids = sorted(paths)
    assert len(run(ids[:6]).to_embed) == 6
    again = store.plan(catalogue(ids[:6]))
    assert again.to_embed.empty and again.to_remove == [] and again.unchanged == 6

    assert list(run(ids[:7]).to_embed["item_id"]) == [ids[6]]         # one new image
    paths[ids[1]].write_bytes(paths[ids[7]].read_bytes())              # an image's bytes change
    assert list(run(ids[:7]).to_embed["item_id"]) == [ids[1]]
    loaded = store.load([ids[1], ids[7]])
    assert list(loaded[0]) == [ids[1]]                                 # ids[7] was never embedded
    np.testing.assert_allclose(np.linalg.norm(loaded[1], axis=1), 1, atol=1e-5)

    plan = run([i for i in ids[:7] if i != ids[2]])                    # an item leaves the catalogue
    assert plan.to_remove == [ids[2]] and plan.to_embed.empty and plan.unchanged == 6
    store.compact()
    assert ids[2] not in set(store.load()[0]) and len(store) == 6
    assert len(list(store.chunks_dir.glob("*.parquet"))) == 1
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["encoder_id"] == encoder.encoder_id and manifest["dim"] == 1280
    assert manifest["preprocessing"] == encoder.preprocessing.describe()


def test_compaction_keeps_latest_rows_and_drops_removed(tmp_path):
    store = EmbeddingStore(tmp_path, "test:1")
    store.write(_batch(["a", "b", "c"], seed=1))
    with store.writer(rows_per_chunk=2) as writer:
        writer.write(_batch(["b"], seed=2, version="v2"))
        writer.write(_batch(["d", "e"], seed=3))
        writer.write(_batch(["f"], seed=4))
    store.remove(["c", "unknown"])
    store.write(_batch(["c"], seed=5, version="v3"))                   # re-added after removal
    store.remove(["e"])
    before = store.load()
    assert list(before[0]) == ["a", "b", "c", "d", "f"]
    np.testing.assert_array_equal(before[1][1], _batch(["b"], seed=2).features[0])
    assert len(list(store.chunks_dir.glob("*.parquet"))) == 6
    store.compact()
    assert len(list(store.chunks_dir.glob("*.parquet"))) == 1
    _assert_same_load(before, store.load())
    store.compact()                                                    # nothing left to do
    _assert_same_load(before, store.load())
    chunked = list(store.iter_chunks())
    assert sorted(i for part in chunked for i in part[0]) == list(before[0])


def test_load_selected_items_in_the_order_asked(tmp_path):
    store = EmbeddingStore(tmp_path, "test:1")
    batch = _batch(["x", "y", "z"])
    store.write(batch)
    ids, features, top_classes, top_probs = store.load(["z", "missing", "x"])
    assert list(ids) == ["z", "x"]
    np.testing.assert_array_equal(features, batch.features[[2, 0]])
    np.testing.assert_array_equal(top_classes, batch.top_classes[[2, 0]])
    assert features.dtype == np.float32 and top_probs.shape == (2, 10)


WRITER = textwrap.dedent("""
    import sys
    from types import SimpleNamespace
    import numpy as np
    from visrec_pipelines.vision.embedding_store import EmbeddingStore, shard_of
    root, shard = sys.argv[1], int(sys.argv[2])
    store = EmbeddingStore(root, "test:1")
    mine = [f"item{i:03d}" for i in range(60) if shard_of(f"item{i:03d}", 2) == shard]
    for start in range(0, len(mine), 7):  # many small chunks, interleaved with the other writer
        ids = mine[start:start + 7]
        features = np.full((len(ids), 8), float(shard), np.float32)
        store.write(SimpleNamespace(item_ids=ids, sha256=["h"] * len(ids), features=features,
                                    top_classes=None, top_probs=None))
""")


def test_two_shard_writers_share_one_store(tmp_path):
    store = EmbeddingStore(tmp_path, "test:1")  # opened before anything was written
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(shard)])
               for shard in (0, 1)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    ids, features, top_classes, _ = store.load()
    assert list(ids) == [f"item{i:03d}" for i in range(60)] and top_classes is None
    assert all(features[k, 0] == shard_of(i, 2) for k, i in enumerate(ids))
    catalogue = pd.DataFrame({"item_id": list(ids) + ["new"], "sha256": ["h"] * 60 + ["h"]})
    plans = [store.plan(catalogue, shard=(s, 2)) for s in (0, 1)]
    assert sum(p.unchanged for p in plans) == 60 and all(p.to_remove == [] for p in plans)
    assert [list(p.to_embed["item_id"]) for p in plans][shard_of("new", 2)] == ["new"]
    store.remove(["item000"])
    store.compact()
    assert len(store) == 59 and store.dim == 8


def test_a_failed_run_publishes_no_partial_chunk(tmp_path):
    store = EmbeddingStore(tmp_path, "test:1")
    with pytest.raises(KeyboardInterrupt):
        with store.writer() as writer:
            writer.write(_batch(["a", "b"]))
            raise KeyboardInterrupt
    assert len(store) == 0 and not list(store.chunks_dir.iterdir())


def test_shards_are_stable_and_balanced():
    assert shard_of("i00001", 4) == 2  # pinned: a changed hash would reshuffle every shard
    counts = np.bincount([shard_of(f"i{i:05d}", 4) for i in range(4000)], minlength=4)
    assert counts.min() > 900


def test_each_encoder_has_its_own_store(tmp_path):
    first = EmbeddingStore(tmp_path, "model:aaaa", {"centre_crop": 224}, DIM)
    second = EmbeddingStore(tmp_path, "model:bbbb", {"centre_crop": 256}, DIM)
    first.write(_batch(["a"]))
    assert first.path != second.path and len(first) == 1 and len(second) == 0
    plan = second.plan(pd.DataFrame({"item_id": ["a"], "sha256": ["a-v1"]}))
    assert list(plan.to_embed["item_id"]) == ["a"]                    # a new encoder re-embeds
    manifest = second.path / "manifest.json"
    manifest.write_text(manifest.read_text().replace("model:bbbb", "model:cccc"))
    with pytest.raises(ValueError, match="holds model:cccc"):
        EmbeddingStore(tmp_path, "model:bbbb")
    with pytest.raises(ValueError, match="8-d"):
        EmbeddingStore(tmp_path, "model:aaaa", dim=16)


# --- damaged or abandoned state repairs itself ----------------------------------------------------

def test_a_corrupt_chunk_is_set_aside_and_its_items_embedded_again(tmp_path):
    store = EmbeddingStore(tmp_path, "enc:1")
    store.write(_batch(["a", "b"]))
    bad = store.write(_batch(["c", "d"], seed=1))
    bad.write_bytes(bad.read_bytes()[:-40])                      # a torn footer
    reopened = EmbeddingStore(tmp_path, "enc:1")
    catalogue = pd.DataFrame({"item_id": list("abcd"), "sha256": ["a-v1", "b-v1", "c-v1", "d-v1"]})
    plan = reopened.plan(catalogue)
    assert sorted(plan.to_embed["item_id"]) == ["c", "d"] and plan.unchanged == 2
    assert len(reopened.repairs) == 1 and "moved to corrupt/" in reopened.repairs[0]
    assert (reopened.path / "corrupt" / bad.name).is_file() and not bad.exists()
    reopened.write(_batch(["c", "d"], seed=1))
    assert list(reopened.load()[0]) == list("abcd")


def test_a_damaged_manifest_is_rebuilt(tmp_path):
    store = EmbeddingStore(tmp_path, "enc:1")
    store.write(_batch(["a"]))
    (store.path / "manifest.json").write_text("{not json")
    reopened = EmbeddingStore(tmp_path, "enc:1")
    assert reopened.dim == DIM and "rebuilt" in reopened.repairs[0]
    assert json.loads((store.path / "manifest.json").read_text())["encoder_id"] == "enc:1"


def test_temp_files_of_dead_writers_are_swept(tmp_path):
    from visrec_pipelines.vision.store_repair import _HOST

    store = EmbeddingStore(tmp_path, "enc:1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = store.chunks_dir / f".{_HOST}-{dead.stdout.strip()}-abc.tmp"
    mine = store.chunks_dir / f".{_HOST}-{__import__('os').getpid()}-def.tmp"
    orphan.write_bytes(b"x" * 100)
    mine.write_bytes(b"x" * 100)
    reopened = EmbeddingStore(tmp_path, "enc:1")
    assert not orphan.exists() and mine.exists()        # a live writer's file is left alone
    assert "unfinished chunk" in reopened.repairs[0]


@pytest.mark.slow
def test_a_killed_embedding_run_resumes_losing_at_most_one_chunk(tmp_path, settings):
    """kill -9 in the middle of `visrec embed`: the rerun embeds only what was not published yet
    (at most one chunk more than the unfinished part) and leaves no temp file behind."""
    import os
    import signal
    import time

    from PIL import Image

    from visrec_pipelines.data.contract import write_table
    from visrec_pipelines.vision.images import validate_images

    shop = settings.dataset_folder("shop")
    shop.images_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in range(300):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(shop.images_dir / f"{n}.png")
    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(300)],
                          "image_path": [f"images/{n}.png" for n in range(300)], "title": "x"})
    write_table(items, shop.items_path)
    write_table(pd.DataFrame(columns=["user_id", "item_id", "event_type", "value", "timestamp"]), shop.events_path)
    accepted, _ = validate_images(items, shop.image_file)
    warehouse = settings.warehouse_for("shop")
    warehouse.dir.mkdir(parents=True)
    accepted.to_parquet(warehouse.table_path("raw_images"))
    env = {**os.environ, "VISREC_ROOT": str(settings.root_dir), "VISREC_ASSETS": str(settings.assets_dir),
           "VISREC_WAREHOUSE": str(settings.warehouse_dir)}
    command = [sys.executable, "-m", "visrec_pipelines.cli", "embed", "--dataset", "shop", "--chunk-rows", "32"]
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = warehouse.embeddings_dir
    deadline = time.time() + 120
    while len(list(chunks.glob("*/chunks/*.parquet"))) < 2 or not list(chunks.glob("*/chunks/.*.tmp")):
        assert worker.poll() is None and time.time() < deadline, "the worker ended before it could be killed"
        time.sleep(0.01)      # killed with chunks published and one half-written
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    published = sum(len(pd.read_parquet(c, columns=["item_id"])) for c in chunks.glob("*/chunks/*.parquet"))
    assert 0 < published < 300
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    embedded = int(again.stdout.split("embedded ")[1].split(",")[0])
    assert embedded == 300 - published                      # only the unpublished rest: a resume
    assert not list(chunks.glob("*/chunks/.*.tmp"))         # the killed writer's file was swept
    assert "unfinished chunk" in again.stdout
