"""The feedback loop under load: events posted to `visrec serve` while a retraining run is in
progress are all there afterwards — each exactly once, retries included — and the next
retraining reads every one of them."""
import os
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from dagster import AssetKey, DagsterInstance

from visrec_pipelines.data.contract import Dataset
from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.runner import run_pipeline

BIN = Path(sys.executable).parent


def retrain(instance) -> dict:
    from visrec_pipelines.definitions import build_definitions

    job = build_definitions().resolve_job_def("retrain")      # settings from the environment, as the server
    job.execute_in_process(instance=instance, partition_key="demo", raise_on_error=False)   # a gate "no" is fine
    event = instance.get_latest_materialization_event(AssetKey("behaviour_source"))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_events_posted_during_a_retrain_are_all_kept_once(isolated_env, monkeypatch, free_port, spawn):
    monkeypatch.setenv("VISREC_AUTOMATION", "off")
    shop = generate_demo(isolated_env / "assets" / "demo", n_items=40, n_users=16, seed=4)
    assert run_pipeline("demo", echo=lambda _: None)                   # a champion and an index
    items = shop.read_items()["item_id"].tolist()
    port = free_port()
    server = spawn([str(BIN / "visrec"), "serve", "--dataset", "demo", "--port", str(port),
                    "--encoder", "none", "--poll-seconds", "1"], env=dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.time() < deadline, "visrec serve did not become ready"
        time.sleep(0.5)

    sent, answers, stop = set(), {"stored": 0, "duplicates": 0, "errors": []}, threading.Event()

    def post_feedback():
        with httpx.Client(base_url=base, timeout=30) as client:
            n, previous = 0, None
            while not stop.is_set() or n < 40:
                batch = [{"event_id": f"fb-{n}-{j}", "user_id": f"u{(n + j) % 16:04d}",
                          "item_id": items[(7 * n + j) % len(items)], "event_type": "purchase"}
                         for j in range(5)]
                for body in ([batch, previous] if previous and n % 4 == 0 else [batch]):   # retries
                    response = client.post("/events", json=body)
                    if response.status_code != 200:
                        answers["errors"].append((response.status_code, response.text[:200]))
                        continue
                    answers["stored"] += response.json()["stored"]
                    answers["duplicates"] += response.json()["duplicates"]
                sent.update(e["event_id"] for e in batch)
                previous, n = batch, n + 1
                time.sleep(0.05)

    poster = threading.Thread(target=post_feedback)
    with DagsterInstance.get() as instance:
        poster.start()
        time.sleep(1)
        during = retrain(instance)                                    # events keep arriving meanwhile
        stop.set()
        poster.join(120)
        assert not answers["errors"] and not poster.is_alive()

        landed = Dataset(shop.root).read_landed_events()
        assert sorted(landed["event_id"]) == sorted(sent)              # none lost, none twice
        assert answers["stored"] == len(sent) and answers["duplicates"] > 0
        assert 0 <= during["landed_feedback_rows"] < len(sent)          # that run saw a part of them

        after = retrain(instance)
        assert after["landed_feedback_rows"] == len(sent)
        assert after["rows"] == len(shop.read_events()) == len(sent) + during["rows"] - during["landed_feedback_rows"]
