"""New champions and indexes swap in without downtime; broken ones never replace what serves."""
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from visrec_pipelines.index.exact import ExactIndex
from visrec_pipelines.recsys.bundle import RankerBundle
from visrec_pipelines.serving.app import create_app
from visrec_pipelines.serving.manager import StateManager

from .conftest import fit, free_port, wait_http


def corrupt(shop, dataset: str, version: str) -> None:
    shop.artifact_file(dataset, version).write_bytes(b"\x80\x04 this is not a pickle")


class LiveServer:
    """The real app under uvicorn in a thread, its watcher polling every 0.2 s."""

    def __init__(self, settings):
        self.port = free_port()
        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                   log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_http(self.url("/readyz"), timeout=60)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_new_champion_and_index_swap_in_under_load(shop):
    dataset = shop.dataset("swap-live")
    first = shop.register(dataset, "bpr")
    user = shop.split.train.user_ids[0]
    seen, failures, stop = [], [], threading.Event()
    with LiveServer(shop.settings(dataset, serving_encoder="none")) as live:
        def load():
            with httpx.Client(timeout=10) as http:
                while not stop.is_set():
                    for path in (f"/recommendations/{user}?k=5", "/items/i00003/similar?k=5"):
                        response = http.get(live.url(path))
                        if response.status_code != 200:
                            failures.append((path, response.status_code, response.text))
                        elif path.startswith("/recommendations"):
                            seen.append(response.json()["champion_version"])
                        else:
                            seen.append(response.json()["index_version"])

        worker = threading.Thread(target=load)
        worker.start()
        try:
            time.sleep(0.5)
            second = shop.register(dataset, "mostpop")            # promote a new champion
            assert wait_until(lambda: httpx.get(live.url("/readyz")).json()["champion_version"] == second)
            new_index = ExactIndex(shop.index.item_ids, shop.index.vectors[::-1], shop.index.categories,
                                   shop.index.tags, source="visrec_items_swap_2")
            new_index.save(shop.warehouse / dataset / "item_index.npz")
            assert wait_until(lambda: httpx.get(live.url("/readyz")).json()["index_version"] == "visrec_items_swap_2")
            time.sleep(0.5)
        finally:
            stop.set()
            worker.join(30)
        status = httpx.get(live.url("/status")).json()
    assert failures == []                                         # no downtime, no errors
    versions = [v for v in seen if not v.startswith("visrec_items")]
    assert versions[0] == first and versions[-1] == second
    assert versions == sorted(versions, key=lambda v: v == second)    # never back to the old one
    indexes = [v for v in seen if v.startswith("visrec_items")]
    assert indexes[0] == "visrec_items_demo_test_1" and indexes[-1] == "visrec_items_swap_2"
    assert status["swaps"] >= 3 and status["last_error"] is None


def test_a_corrupt_artifact_never_replaces_the_champion(shop, app_factory):
    dataset = shop.dataset("swap-corrupt")
    good = shop.register(dataset, "bpr")
    app = app_factory(dataset)
    user = shop.split.train.user_ids[3]
    with TestClient(app) as client:
        before = client.get(f"/recommendations/{user}").json()
        broken = shop.register(dataset, "mostpop")
        corrupt(shop, dataset, broken)
        outcome = app.state.manager.reload()
        assert not outcome["swapped"]
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["champion_version"] == good
        assert ready.json()["degraded"] and f"version {broken}" in ready.json()["fallback"]
        status = client.get("/status").json()
        assert status["champion_alias_version"] == broken
        assert status["last_error"]["component"] == "champion" and status["last_error"]["version"] == broken
        assert "cannot be loaded" in status["last_error"]["error"]
        assert client.get(f"/recommendations/{user}").json() == before        # still the good champion
        assert not app.state.manager.reload()["swapped"]      # not retried every poll

        # a version that unpickles but cannot serve (item and popularity sizes disagree)
        ranker = fit("mostpop", shop.split)
        bad = RankerBundle(ranker, shop.split.train.user_ids, shop.split.train.item_ids,
                           np.ones(3, dtype=np.float32))
        registry = shop.registry(dataset)
        _, inconsistent = registry.log_ranker(bad, "mostpop", {}, {}, {})
        registry.set_champion(inconsistent)
        assert not app.state.manager.reload()["swapped"]
        assert "popularity has 3 entries" in client.get("/status").json()["last_error"]["error"]
        assert client.get("/readyz").json()["champion_version"] == good

        repaired = shop.register(dataset, "mostpop")             # the next good one is taken
        assert app.state.manager.reload()["swapped"]
        ready = client.get("/readyz").json()
        assert ready["champion_version"] == repaired and not ready["degraded"]


def test_a_restart_on_a_broken_alias_serves_the_last_good_champion(shop):
    dataset = shop.dataset("swap-restart")
    good = shop.register(dataset, "bpr")
    first = StateManager(shop.settings(dataset))
    first.reload()
    assert first.state.champion.version == good and first.last_good_path.is_file()
    broken = shop.register(dataset, "mostpop")
    corrupt(shop, dataset, broken)

    restarted = StateManager(shop.settings(dataset))                 # a new process, same disk
    restarted.reload()
    assert restarted.state.ready and restarted.state.champion.version == good
    status = restarted.status()
    assert f"version {broken}" in status["fallback"] and "last good" in status["fallback"]
    assert status["last_error"]["version"] == broken

    restarted.last_good_path.unlink()                                # no record: the registry's history
    from_history = StateManager(shop.settings(dataset))
    from_history.reload()
    assert from_history.state.champion.version == good

    lonely = shop.dataset("swap-nothing-good")                       # nothing good at all: not ready
    corrupt(shop, lonely, shop.register(lonely, "bpr"))
    nothing = StateManager(shop.settings(lonely))
    nothing.reload()
    assert not nothing.state.ready and nothing.status()["champion"] is None
    assert "cannot be loaded" in nothing.status()["last_error"]["error"]


def test_a_broken_index_never_replaces_the_serving_one(shop, app_factory):
    dataset = shop.dataset("swap-index")
    shop.register(dataset, "bpr")
    app = app_factory(dataset)
    snapshot = shop.warehouse / dataset / "item_index.npz"
    with TestClient(app) as client:
        before = client.get("/items/i00003/similar").json()
        snapshot.write_bytes(b"PK\x03\x04 not really a zip")
        assert not app.state.manager.reload()["swapped"]
        assert client.get("/items/i00003/similar").json() == before
        assert client.get("/status").json()["last_error"]["component"] == "index"
        assert client.get("/readyz").status_code == 200

        reordered = ExactIndex(shop.index.item_ids[::-1], shop.index.vectors[::-1],
                               shop.index.categories[::-1], shop.index.tags[::-1], source="visrec_items_fixed")
        reordered.save(snapshot)
        assert app.state.manager.reload()["swapped"]
        after = client.get("/items/i00003/similar").json()
        assert after["index_version"] == "visrec_items_fixed"
        assert [i["item_id"] for i in after["items"]] == [i["item_id"] for i in before["items"]]


def test_the_index_can_come_from_milvus(shop, app_factory):
    """index_source=milvus: the collection the alias points at, exported into memory."""
    from visrec_pipelines.index.milvus_index import open_item_index

    dataset = shop.dataset("swap-milvus")
    shop.register(dataset, "bpr")
    with open_item_index(shop.settings(dataset).warehouse_for()) as milvus:
        collection = milvus.build(shop.index.item_ids, shop.index.vectors, shop.index.categories,
                                  shop.index.tags)
    app = app_factory(dataset, index_source="milvus")
    with TestClient(app) as client:
        body = client.get("/items/i00005/similar", params={"k": 3, "tags": "red"}).json()
        assert body["index_version"] == collection
        expected = [n for n, _ in shop.index.similar_items("i00005", 3, tags=["red"])]
        assert [i["item_id"] for i in body["items"]] == expected
        assert client.get("/status").json()["index"]["source"] == "milvus"


@pytest.mark.parametrize("neighbours, table_max", [(100, 0), (5, 50_000)])
def test_similar_without_or_beyond_the_neighbour_table_is_still_exact(shop, app_factory, neighbours, table_max):
    app = app_factory("demo", neighbours=neighbours, neighbour_table_max_items=table_max)
    with TestClient(app) as client:
        for tags in ([], ["red"], ["shoe", "blue"]):
            got = client.get("/items/i00007/similar", params={"k": 8, "tags": tags}).json()["items"]
            assert [i["item_id"] for i in got] == [n for n, _ in shop.index.similar_items("i00007", 8, tags=tags)]


def test_an_in_place_milvus_update_is_picked_up(shop, app_factory):
    """item_index upserts small changes into the live collection (same name) and then rewrites the
    snapshot: a server reading Milvus notices through the snapshot and re-exports."""
    from visrec_pipelines.index.exact import ExactIndex
    from visrec_pipelines.index.milvus_index import open_item_index

    dataset = shop.dataset("swap-milvus-inplace")
    shop.register(dataset, "bpr")
    warehouse = shop.settings(dataset).warehouse_for()
    with open_item_index(warehouse) as milvus:
        milvus.build(shop.index.item_ids, shop.index.vectors, shop.index.categories, shop.index.tags)
    app = app_factory(dataset, index_source="milvus")
    with TestClient(app) as client:
        assert client.get("/items/i00005/similar", params={"k": 1}).json()["items"][0]["item_id"] != "i00009"
        app.state.manager.reload()
        twin = shop.index.vectors[shop.index.item_ids.tolist().index("i00005")]
        with open_item_index(warehouse) as milvus:                   # i00009 now looks like i00005
            milvus.upsert(["i00009"], twin[None, :] + 1e-3, ["x"], [["red"]])
        vectors = shop.index.vectors.copy()
        vectors[shop.index.item_ids.tolist().index("i00009")] = twin + 1e-3
        ExactIndex(shop.index.item_ids, vectors, shop.index.categories, shop.index.tags,
                   source="updated").save(warehouse.item_index_snapshot)
        assert app.state.manager.reload()["swapped"]
        assert client.get("/items/i00005/similar", params={"k": 1}).json()["items"][0]["item_id"] == "i00009"
