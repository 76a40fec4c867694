"""Every persisted state serving reads, damaged on purpose: the server keeps answering (with what it
had, what still loads, or a documented 503 with a reason), never a 500, and /status says so without
absolute paths. (The champion's bundle.pkl: test_champion_fallback.py.)"""
import json
import os

import pytest
from fastapi.testclient import TestClient

from visrec_pipelines.data.contract import Dataset
from visrec_pipelines.serving.manager import StateManager

from .test_champion_fallback import truncate


def event(event_id: str) -> dict:
    return {"event_id": event_id, "user_id": "u0001", "item_id": "i00001", "event_type": "click"}


def public_text(shop, body) -> str:
    """The body as text, checked to hold no absolute path of the test's folders."""
    text = json.dumps(body)
    assert str(shop.root) not in text and "/tmp/" not in text, text[:500]
    return text


# --- the index snapshot ------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_index_snapshot(shop, app_factory, damage):
    dataset = shop.dataset(f"faults-index-{damage}")
    shop.register(dataset, "bpr")
    snapshot = shop.warehouse / dataset / "item_index.npz"
    good = snapshot.read_bytes()
    bad = good[: len(good) // 2] if damage == "truncated" else b"PK\x03\x04" + os.urandom(4000)
    snapshot.write_bytes(bad)
    app = app_factory(dataset, serving_encoder="none")
    with TestClient(app, raise_server_exceptions=False) as client:
        # nothing to fall back to at start: recommendations answer, the index's routes say 503 why
        assert client.get("/recommendations/u0001").status_code == 200
        similar = client.get("/items/i00003/similar")
        assert similar.status_code == 503 and "index" in similar.json()["detail"]
        assert client.get("/readyz").json()["missing"] == ["index"]
        status = client.get("/status").json()
        assert status["last_error"]["component"] == "index" and status["index"] is None
        public_text(shop, status)

        snapshot.write_bytes(good)                                   # rebuilt: picked up
        assert app.state.manager.reload()["swapped"]
        before = client.get("/items/i00003/similar").json()
        snapshot.write_bytes(bad)                                    # damaged again while serving
        assert not app.state.manager.reload()["swapped"]
        assert client.get("/items/i00003/similar").json() == before    # the one it had keeps serving
        assert client.get("/readyz").status_code == 200
        status = client.get("/status").json()
        assert status["last_error"]["component"] == "index" and status["index"]["location"] == "snapshot item_index.npz"
        public_text(shop, status)


# --- last_good.json ----------------------------------------------------------------------------------
def test_a_damaged_last_good_record(shop):
    dataset = shop.dataset("faults-last-good")
    first, second = shop.register(dataset, "bpr"), shop.register(dataset, "mostpop")
    truncate(shop.artifact_file(dataset, second))
    record = shop.settings(dataset).warehouse_for().last_good
    record.parent.mkdir(parents=True, exist_ok=True)
    for content in (b'{"champion_version": "1", "ran', b"[1, 2]", b"\x00" * 64):   # truncated, not a record
        record.write_bytes(content)
        manager = StateManager(shop.settings(dataset))                       # a restart
        manager.reload()
        assert manager.state.ready and manager.state.champion.version == first   # from the champion history
        status = manager.status()
        assert any("last_good.json cannot be read" in e["error"] for e in status["errors"]), status["errors"]
        public_text(shop, status)
        assert json.loads(record.read_text())["champion_version"] == first   # rewritten whole


# --- the landing ledger and users.csv (POST /events) ---------------------------------------------------
def test_a_damaged_ledger_is_rebuilt_and_reported(shop, app_factory):
    dataset = shop.dataset("faults-ledger")
    ledger = Dataset(shop.assets / dataset).landing_events_dir / "_ledger.sqlite3"
    with TestClient(app_factory(dataset), raise_server_exceptions=False) as client:
        assert client.post("/events", json=event("l1")).status_code == 200
        ledger.write_bytes(b"this is not a database " * 200)         # damaged while the server runs
        retry = client.post("/events", json=event("l1"))
        assert retry.status_code == 200, retry.text
        assert retry.json()["duplicates"] == 1                       # nothing twice ...
        assert client.post("/events", json=event("l2")).json()["stored"] == 1
        feedback = client.get("/status").json()["feedback"]
        assert feedback["repairs"] and "rebuilt" in feedback["repairs"][0]
        public_text(shop, feedback)
    assert sorted(Dataset(shop.assets / dataset).read_landed_events()["event_id"]) == ["l1", "l2"]   # ... nothing lost


def test_a_ledger_damaged_before_the_first_event(shop, app_factory):
    dataset = shop.dataset("faults-ledger-at-start")
    directory = Dataset(shop.assets / dataset).landing_events_dir
    directory.mkdir(parents=True)
    (directory / "_ledger.sqlite3").write_bytes(os.urandom(8192))
    with TestClient(app_factory(dataset), raise_server_exceptions=False) as client:
        assert client.post("/events", json=event("s1")).status_code == 200
        assert client.get("/status").json()["feedback"]["repairs"]


@pytest.mark.parametrize("content", [b"", b"\n", b"name,email\nann,a@x\n"])
def test_an_unreadable_users_table_is_a_clear_503_until_it_is_fixed(shop, app_factory, content):
    dataset = shop.dataset(f"faults-users-{len(list(shop.assets.iterdir()))}")
    users = shop.assets / dataset / "users.csv"
    good = users.read_bytes()
    with TestClient(app_factory(dataset), raise_server_exceptions=False) as client:
        assert client.post("/events", json=event("u1")).status_code == 200
        users.write_bytes(content)
        refused = client.post("/events", json=event("u2"))
        assert refused.status_code == 503, refused.text
        detail = refused.json()["detail"]
        assert detail.startswith("the dataset's users table cannot be read: ") and "users.csv" in detail
        public_text(shop, refused.json())
        assert client.get("/status").json()["feedback"]["problem"] == detail
        users.write_bytes(good)                                      # fixed: picked up at once
        assert client.post("/events", json=event("u2")).status_code == 200
        assert client.get("/status").json()["feedback"]["problem"] is None


# --- the warehouse's tables ----------------------------------------------------------------------------
@pytest.mark.parametrize("table", ["behaviour_events", "image_embeddings"])
def test_a_damaged_warehouse_table_costs_only_what_it_held(shop, app_factory, table):
    dataset = shop.dataset(f"faults-table-{table}")
    shop.register(dataset, "bpr")
    path = shop.settings(dataset).warehouse_for().table_path(table)
    path.write_bytes(b"PAR1 this was a parquet file PAR1")
    with TestClient(app_factory(dataset, serving_encoder="none"), raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        user = shop.split.train.user_ids[0]
        assert client.get(f"/recommendations/{user}").status_code == 200
        assert client.get(f"/users/{user}/history").json()["total"] > 0     # the champion's history
        status = client.get("/status").json()
        assert any(f"{table}.parquet cannot be read" in p for p in status["problems"]), status["problems"]
        public_text(shop, status)
