"""POST /events: validated, idempotent by event id, landed atomically where the pipeline reads them."""
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from visrec_pipelines.data.contract import Dataset
from visrec_pipelines.data.landing import EventLanding
from visrec_pipelines.data.rules import validate_event


@pytest.fixture
def events_app(shop, app_factory, request):
    """A fresh dataset per test, so landing areas do not mix (feedback needs no champion)."""
    dataset = shop.dataset(f"events-{len(list(shop.assets.iterdir()))}")
    return dataset, app_factory(dataset)


def landed(shop, dataset):
    return Dataset(shop.assets / dataset).read_landed_events()


def event(event_id="e1", **overrides):
    return {"event_id": event_id, "user_id": "u0001", "item_id": "i00001", "event_type": "click", **overrides}


def test_an_event_lands_once_and_the_pipeline_reads_it(shop, events_app):
    dataset, app = events_app
    with TestClient(app) as client:
        first = client.post("/events", json=event("e1", event_type="rating", value=4.5,
                                                  timestamp="2025-03-01T12:00:00+02:00"))
        assert first.status_code == 200, first.text
        assert first.json()["stored"] == 1 and first.json()["results"] == [{"event_id": "e1", "status": "stored"}]
        again = client.post("/events", json=event("e1", event_type="rating", value=4.5,
                                                  timestamp="2025-03-01T12:00:00+02:00"))
        assert again.status_code == 200 and again.json()["duplicates"] == 1 and again.json()["stored"] == 0
    rows = landed(shop, dataset)
    assert len(rows) == 1
    row = rows.iloc[0].to_dict()
    assert row == {"user_id": "u0001", "item_id": "i00001", "event_type": "rating", "value": "4.5",
                   "timestamp": "2025-03-01T10:00:00.000000Z", "event_id": "e1"}
    files = list((shop.assets / f"{dataset}.landing" / "events").glob("events-*.csv"))
    assert len(files) == 1 and not list(files[0].parent.glob(".*.tmp"))
    events = Dataset(shop.assets / dataset).read_events()       # what behaviour_source reads
    original = Dataset(shop.assets / "demo").read_events()
    assert len(events) == len(original) + 1 and events.iloc[-1]["event_id"] == "e1"


def test_same_id_with_other_content_is_a_conflict(events_app):
    _, app = events_app
    with TestClient(app) as client:
        assert client.post("/events", json=event("c1")).status_code == 200
        conflict = client.post("/events", json=event("c1", item_id="i00002"))
        assert conflict.status_code == 409 and "c1" in conflict.json()["detail"]


def test_a_retry_without_timestamp_is_still_a_duplicate(shop, events_app):
    dataset, app = events_app
    with TestClient(app) as client:
        client.post("/events", json=event("t1"))            # timestamp defaults to now
        assert client.post("/events", json=event("t1")).json()["duplicates"] == 1
    stamp = landed(shop, dataset).iloc[0]["timestamp"]
    assert abs(datetime.fromisoformat(stamp.replace("Z", "+00:00")) - datetime.now(UTC)) < timedelta(minutes=1)


def test_batches_are_all_or_nothing(shop, events_app):
    dataset, app = events_app
    with TestClient(app) as client:
        ok = client.post("/events", json=[event("b1"), event("b2", event_type="purchase"), event("b1")])
        assert ok.status_code == 200 and (ok.json()["stored"], ok.json()["duplicates"]) == (2, 1)
        bad = client.post("/events", json=[event("b3"), event("b4", event_type="teleport")])
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", 1, "event_type"]
        assert client.post("/events", json=[]).status_code == 422
    assert sorted(landed(shop, dataset)["event_id"]) == ["b1", "b2"]


@pytest.mark.parametrize("payload, field, message", [
    (event(event_type="teleport"), "event_type", "is not one of"),
    (event(event_type="rating"), "value", "a rating needs a value"),
    (event(event_type="rating", value=7), "value", "outside 0.5-5"),
    (event(event_type="rating", value=0.1), "value", "outside 0.5-5"),
    (event(item_id="no-such-item"), "item_id", "not in the catalogue"),
    (event(user_id="not a user"), "user_id", "not a well-formed id"),
    (event(user_id="u9999"), "user_id", "users table"),          # the demo shop lists its users
    (event(timestamp="2999-01-01T00:00:00Z"), "timestamp", "future"),
    (event(timestamp="1980-01-01T00:00:00Z"), "timestamp", "before 1990"),
    (event(timestamp="2025-01-01T00:00:00"), "timestamp", "no time zone"),
    (event(timestamp="yesterday"), "timestamp", "not ISO-8601"),
    (event(event_id="bad id!"), "event_id", "well-formed"),
    (event(event_id=""), "event_id", "required"),
])
def test_invalid_events_are_422_with_a_clear_message(events_app, shop, payload, field, message):
    dataset, app = events_app
    with TestClient(app) as client:
        response = client.post("/events", json=payload)
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"][-1] == field and message in error["msg"]
    assert landed(shop, dataset).empty


@pytest.mark.parametrize("body", [
    b"{", b"[1, 2]", b'"click"', b"null", b'{"event_id": "x"}',
    b'{"event_id": "x", "user_id": "u0001", "item_id": "i00001", "event_type": "click", "extra": 1}',
    b'{"event_id": "x", "user_id": 42, "item_id": "i00001", "event_type": "click"}',
    b'{"event_id": "x", "user_id": "u0001", "item_id": "i00001", "event_type": "click", "value": "much"}',
    b'{"event_id": "x", "user_id": "u0001", "item_id": "i00001", "event_type": "click", "value": NaN}',
])
def test_malformed_bodies_are_422(events_app, body):
    _, app = events_app
    with TestClient(app) as client:
        response = client.post("/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


def test_api_key_guards_writes(shop, app_factory):
    dataset = shop.dataset("events-api-key")
    with TestClient(app_factory(dataset, api_key="s3cret")) as client:
        assert client.post("/events", json=event("k1")).status_code == 401
        assert client.post("/events", json=event("k1"), headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.post("/admin/reload").status_code == 401
        assert client.post("/events", json=event("k1"), headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/items/i00001/similar").status_code == 200     # reads stay open
        assert client.get("/status").json()["api_key_required"] is True


def test_concurrent_retries_store_exactly_once(shop, events_app):
    dataset, app = events_app
    outcomes = []
    with TestClient(app) as client:
        def post(i):
            # 8 clients retry the same 5 events while each also sends 5 events of its own
            batch = [event(f"shared-{n}") for n in range(5)] + [event(f"own-{i}-{n}") for n in range(5)]
            outcomes.append(client.post("/events", json=batch).json())

        threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(o["stored"] for o in outcomes) == 5 + 8 * 5
    rows = landed(shop, dataset)
    assert len(rows) == 45 and rows["event_id"].is_unique


def _store_in_process(directory, ids):
    landing = EventLanding(directory)
    known = {"i00001": 0}
    landing.store([validate_event(event(i), known) for i in ids])


def test_processes_share_the_ledger(tmp_path):
    """Two server processes on one landing area: overlapping ids land once."""
    directory = Dataset(tmp_path / "shop").landing_events_dir
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_store_in_process, args=(directory, [f"p{n}" for n in range(s, s + 30)]))
               for s in (0, 15)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    rows = Dataset(tmp_path / "shop").read_landed_events()
    assert sorted(rows["event_id"]) == sorted(f"p{n}" for n in range(45))
    assert EventLanding(directory).count() == 45


def test_a_crash_before_the_commit_neither_loses_nor_duplicates(tmp_path, monkeypatch):
    directory = Dataset(tmp_path / "shop").landing_events_dir
    landing = EventLanding(directory)
    known = {"i00001": 0}
    batch = [validate_event(event(i), known) for i in ("x1", "x2")]

    written = EventLanding._write_file

    def crash_after_writing(self, name, rows):
        written(self, name, rows)
        raise KeyboardInterrupt("power cut before COMMIT")

    monkeypatch.setattr(EventLanding, "_write_file", crash_after_writing)
    with pytest.raises(KeyboardInterrupt):
        landing.store(batch)
    monkeypatch.undo()
    assert landing.count() == 0                       # the ledger rolled back ...
    assert len(Dataset(tmp_path / "shop").read_landed_events()) == 2   # ... the file was already complete

    retry = landing.store(batch)                      # the client was never answered: it retries
    assert retry.stored == ["x1", "x2"]
    assert len(list(directory.glob("events-*.csv"))) == 1      # same ids, same file: overwritten
    assert len(Dataset(tmp_path / "shop").read_landed_events()) == 2

    # A crash that nobody retries: reopening the area adopts the orphan file's ids.
    monkeypatch.setattr(EventLanding, "_write_file", crash_after_writing)
    with pytest.raises(KeyboardInterrupt):
        landing.store([validate_event(event("x3"), known)])
    monkeypatch.undo()
    reopened = EventLanding(directory)
    assert reopened.count() == 3
    assert reopened.store([validate_event(event("x3"), known)]).duplicates == ["x3"]
    assert len(Dataset(tmp_path / "shop").read_landed_events()) == 3
