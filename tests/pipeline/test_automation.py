"""Sensors and the schedule, with Dagster's testing utilities: each change triggers exactly one run,
an unchanged world triggers none, and the first look after the main job does not redo its work."""
import os
import time

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)
from PIL import Image

from visrec_pipelines import automation
from visrec_pipelines.data.contract import Dataset, write_table
from visrec_pipelines.data.demo import generate_demo


@pytest.fixture
def shop(isolated_env, monkeypatch):
    monkeypatch.setenv("VISREC_DATASET", "demo")
    return generate_demo(isolated_env / "assets" / "demo", n_items=40, n_users=12, seed=3)


@pytest.fixture
def sensors(settings):
    from visrec_pipelines.defs.automation import build_sensors
    from visrec_pipelines.resources import default_resources

    resources = default_resources(settings)
    return {s.name: (s, resources) for s in build_sensors(settings)}


def tick(sensor, instance, cursor=None):
    """(run requests, skip reason, new cursor) of one evaluation of a (sensor, resources) pair."""
    sensor, resources = sensor
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = sensor(context)
    if isinstance(result, SkipReason):
        return [], result.skip_message, cursor
    requests = list(result.run_requests or [])
    skip = result.skip_reason.skip_message if result.skip_reason else None
    return requests, skip, result.cursor if result.cursor is not None else cursor


def materialise(instance, key: str, dataset: str = "demo") -> None:
    instance.report_runless_asset_event(AssetMaterialization(key, partition=dataset))


def add_item(ds: Dataset, item_id: str, colour: str) -> None:
    Image.new("RGB", (64, 64), colour).save(ds.images_dir / f"{item_id}.jpg")
    items = ds.read_items()
    row = {c: "" for c in items.columns} | {"item_id": item_id, "image_path": f"images/{item_id}.jpg",
                                             "title": f"new {colour} thing"}
    write_table(pd.concat([items, pd.DataFrame([row])], ignore_index=True), ds.items_path)


def land(ds: Dataset, name: str, rows: int = 3, events: pd.DataFrame | None = None) -> None:
    """A landing file as the serving API or a loader writes it (contract columns + event_id)."""
    folder = ds.landing_events_dir
    folder.mkdir(parents=True, exist_ok=True)
    events = ds.read_events().head(rows) if events is None else events
    events = events.assign(event_id=[f"{name}-{n}" for n in range(len(events))])
    events.to_csv(folder / name, index=False)


# --- plain functions -------------------------------------------------------------------------------

def test_catalogue_fingerprints_tell_added_changed_and_removed(shop):
    before = automation.catalogue_fingerprints(shop)
    assert len(before) == 40
    add_item(shop, "new1", "red")
    first = shop.read_items()["image_path"].iloc[0]
    Image.new("RGB", (64, 64), "blue").save(shop.image_file(first))       # same file, new picture
    os.utime(shop.image_file(first), ns=(time.time_ns() + 10**9,) * 2)
    change = automation.compare(before, automation.catalogue_fingerprints(shop))
    assert change.added == ["new1"] and change.changed == [shop.read_items()["item_id"].iloc[0]]
    assert not change.removed
    assert automation.compare(before, {k: v for k, v in before.items() if k != "i00001"}).removed == ["i00001"]


def test_fingerprint_store_finds_what_a_cursor_stood_for(tmp_path):
    store = automation.FingerprintStore(tmp_path, keep=2)
    keys = [store.save({"a": str(n)}) for n in range(4)]
    assert store.load(keys[-1]) == {"a": "3"} and store.load(None) == {}
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_each_landing_file_is_taken_once(shop):
    cursor = automation.BehaviourCursor()
    files, changed, cursor = automation.new_behaviour_data(shop, cursor)
    assert files == [] and changed                  # first look: events.csv is new
    land(shop, "events-a.csv")
    land(shop, "events-b.csv")
    files, changed, cursor = automation.new_behaviour_data(shop, automation.BehaviourCursor.parse(cursor.dumps()))
    assert files == ["events-a.csv", "events-b.csv"] and not changed
    assert automation.new_behaviour_data(shop, cursor)[:2] == ([], False)
    land(shop, "events-c.csv")
    os.utime(shop.landing_events_dir / "events-c.csv", ns=(cursor.watermark_ns - 10**9,) * 2)
    files, _, cursor = automation.new_behaviour_data(shop, cursor)   # late clock, still inside the edge
    assert files == ["events-c.csv"]
    assert automation.new_behaviour_data(shop, cursor)[0] == []


# --- sensors ---------------------------------------------------------------------------------------

def test_catalogue_sensor_runs_once_per_change(shop, sensors):
    sensor = sensors["catalogue_sensor"]
    with DagsterInstance.ephemeral() as instance:
        requests, _, cursor = tick(sensor, instance)
        assert len(requests) == 1 and sensor[0].job_name == "catalogue_refresh"
        assert requests[0].tags["visrec/change"] == "40 added, 0 changed, 0 removed"
        assert tick(sensor, instance, cursor)[0] == []                       # nothing new
        add_item(shop, "new1", "green")
        assert requests[0].run_config == {}                                  # first look: build it all
        requests, _, cursor = tick(sensor, instance, cursor)
        assert [r.tags["visrec/change"] for r in requests] == ["1 added, 0 changed, 0 removed"]
        assert requests[0].tags["visrec/items"] == "new1"
        ops = requests[0].run_config["ops"]                                    # those items only
        assert ops["item_index"]["config"] == {"only_items": ["new1"], "removed_items": []}
        assert ops["semantic_tags"]["config"] == {"only_items": ["new1"]}
        assert tick(sensor, instance, cursor)[0] == []


@pytest.mark.slow
def test_a_refresh_for_named_items_touches_only_those(shop, settings):
    """catalogue_refresh with the sensor's run config: the new and the changed item are tagged and
    upserted, the removed one deleted; everything else is kept as it was."""
    from visrec_pipelines.definitions import build_definitions
    from visrec_pipelines.defs.automation import refresh_selection
    from visrec_pipelines.defs.partitions import register_dataset
    from visrec_pipelines.index.exact import ExactIndex

    def refresh(run_config=None) -> dict:       # as the sensor asks for it
        job = build_definitions(settings).resolve_job_def("catalogue_refresh")
        register_dataset(instance, "demo")
        result = job.execute_in_process(run_config=run_config or {}, instance=instance, partition_key="demo",
                                        asset_selection=refresh_selection(incremental=bool(run_config)))
        assert result.success
        return {key: {k: v.value for k, v in instance.get_latest_materialization_event(AssetKey(key))
                      .asset_materialization.metadata.items()} for key in ("semantic_tags", "item_index")}

    with DagsterInstance.ephemeral() as instance:
        first = refresh()
        assert first["item_index"]["mode"] == "full" and first["semantic_tags"]["tagged_now"] == 40
        add_item(shop, "new1", "green")
        items = shop.read_items()
        changed, removed = items["item_id"].iloc[0], items["item_id"].iloc[1]
        Image.new("RGB", (64, 64), "blue").save(shop.image_file(items["image_path"].iloc[0]))
        from visrec_pipelines.data.contract import write_table
        write_table(items[items["item_id"] != removed], shop.items_path)
        touched = ["new1", changed]
        second = refresh({"ops": {"semantic_tags": {"config": {"only_items": touched}},
                                  "item_index": {"config": {"only_items": touched, "removed_items": [removed]}}}})
        assert second["semantic_tags"]["tagged_now"] == 2 and second["semantic_tags"]["items"] == 40
        index = second["item_index"]
        assert (index["mode"], index["upserted"], index["deleted"], index["indexed"]) == ("incremental", 2, 1, 40)
        assert index["collection"] == first["item_index"]["collection"]           # updated in place
        snapshot = ExactIndex.load(index["snapshot"])
        assert snapshot.source != first["item_index"]["version"] and "new1" in set(snapshot.item_ids)
        assert removed not in set(snapshot.item_ids)
        assert snapshot.similar_items("new1", k=3)


def test_catalogue_sensor_first_look_after_the_main_job_runs_nothing(shop, sensors):
    with DagsterInstance.ephemeral() as instance:
        materialise(instance, "item_index")              # the main job indexed everything just now
        requests, skip, cursor = tick(sensors["catalogue_sensor"], instance)
        assert requests == [] and "newer" in skip and cursor
        add_item(shop, "late", "red")
        assert len(tick(sensors["catalogue_sensor"], instance, cursor)[0]) == 1


def test_behaviour_sensor_waits_for_the_catalogue_then_runs_once_per_batch(shop, sensors):
    sensor = sensors["behaviour_sensor"]
    with DagsterInstance.ephemeral() as instance:
        requests, skip, _ = tick(sensor, instance)
        assert requests == [] and "image_embeddings" in skip
        materialise(instance, "image_embeddings")
        materialise(instance, "behaviour_events")        # events.csv already consumed
        requests, skip, cursor = tick(sensor, instance)
        assert requests == [] and skip == "demo: no new behaviour data"
        land(shop, "events-1.csv")
        requests, _, cursor = tick(sensor, instance, cursor)
        assert len(requests) == 1 and sensor[0].job_name == "retrain"
        assert requests[0].tags["visrec/files"] == "events-1.csv"
        assert tick(sensor, instance, cursor)[0] == []
        land(shop, "events-2.csv")
        land(shop, "events-3.csv")
        requests, _, cursor = tick(sensor, instance, cursor)
        assert [r.tags["visrec/files"] for r in requests] == ["events-2.csv,events-3.csv"]


def test_nightly_schedule_retrains_every_dataset(settings):
    from visrec_pipelines.definitions import build_definitions
    from visrec_pipelines.defs.automation import build_schedules
    from visrec_pipelines.defs.partitions import register_dataset
    from visrec_pipelines.runner import dagster_instance

    schedule = build_schedules(settings)[0]
    assert schedule.cron_schedule == "0 2 * * *" and schedule.job_name == "retrain"
    with dagster_instance(settings) as instance:
        for name in ("demo", "shop"):
            register_dataset(instance, name)
        at = __import__("datetime").datetime(2026, 1, 2, 2, 0, tzinfo=__import__("datetime").timezone.utc)
        repository = build_definitions(settings).get_repository_def()
        result = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=at,
                                                               repository_def=repository))
    assert sorted(r.partition_key for r in result.run_requests) == ["demo", "shop"]


def test_each_dataset_has_its_own_cursor_and_runs(shop, sensors):
    """Two datasets: a new one becomes a partition; a change to one runs that one only."""
    other = generate_demo(shop.root.parent / "other", n_items=12, n_users=4, seed=9)
    sensor = sensors["catalogue_sensor"]
    with DagsterInstance.ephemeral() as instance:
        sensor_def, resources = sensor
        result = sensor_def(build_sensor_context(instance=instance, resources=resources))
        assert sorted(r.partition_key for r in result.run_requests) == ["demo", "other"]
        assert result.dynamic_partitions_requests[0].partition_keys == ["demo", "other"]
        add_item(other, "late", "red")
        requests, _, _ = tick(sensor, instance, result.cursor)
        assert [(r.partition_key, r.tags["visrec/items"]) for r in requests] == [("other", "late")]


def test_the_code_location_has_the_jobs_sensors_and_schedule(settings):
    from visrec_pipelines.definitions import build_definitions

    defs = build_definitions(settings)
    assert {s.name for s in defs.sensors} == {"catalogue_sensor", "behaviour_sensor"}
    for job in ("catalogue_refresh", "retrain"):
        assert defs.resolve_job_def(job) is not None


# --- end to end with a real dagster-daemon ---------------------------------------------------------

def _runs_by_job(instance) -> dict:
    out = {}
    for run in instance.get_runs():
        out.setdefault(run.job_name, []).append(run)
    return out


def _wait_for(instance, predicate, what: str, daemon, timeout: float = 360):
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = _runs_by_job(instance)
        failed = [r for rs in runs.values() for r in rs if r.status.value == "FAILURE"
                  and r.job_name != "retrain"]   # a retrain whose gate says no is a failed step
        assert not failed, f"runs failed: {[(r.job_name, r.run_id) for r in failed]}"
        if predicate(runs):
            return runs
        assert daemon.poll() is None, "dagster-daemon exited"
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}; runs so far: "
                         f"{ {j: [r.status.value for r in rs] for j, rs in _runs_by_job(instance).items()} }")


def _done(runs, job, n=1) -> bool:
    finished = [r for r in runs.get(job, []) if r.is_finished]
    return len(finished) >= n


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_daemon_carries_new_images_and_events_to_a_gated_model(shop, monkeypatch, spawn):
    """Fresh shop, nobody clicks anything: the daemon's sensors build the catalogue, train and
    promote a champion; then a new image and a batch of feedback events arrive and are carried
    through refresh, retraining and the gate on their own."""
    import subprocess
    import sys
    from pathlib import Path

    from visrec_pipelines.settings import Settings

    home = Path(os.environ["DAGSTER_HOME"])
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("VISREC_SENSOR_INTERVAL", "2")
    daemon = spawn(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "visrec_pipelines.definitions"],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=open(home / "daemon.log", "wb"))
    try:
        registry = Settings().registry("demo")          # where the daemon's runs register
        with DagsterInstance.get() as instance:
            runs = _wait_for(instance, lambda r: _done(r, "catalogue_refresh") and _done(r, "retrain"),
                             "first champion", daemon)
            assert all(r.status.value == "SUCCESS" for r in runs["catalogue_refresh"] + runs["retrain"])
            first = str(registry.current_champion().version)

            add_item(shop, "arrival", "purple")
            events = shop.read_events()
            feedback = events[events["event_type"] == "view"].head(12).assign(event_type="purchase", value="1")
            land(shop, "events-feedback.csv", events=feedback)
            runs = _wait_for(instance, lambda r: _done(r, "catalogue_refresh", 2) and _done(r, "retrain", 2),
                             "refresh and retrain after new data", daemon)
            refresh = runs["catalogue_refresh"][0]            # newest first
            assert refresh.tags["visrec/change"] == "1 added, 0 changed, 0 removed"
            indexed = instance.get_latest_materialization_event(AssetKey("item_index")).asset_materialization
            assert indexed.metadata["mode"].value == "incremental" and indexed.metadata["upserted"].value == 1
            assert runs["retrain"][0].tags["visrec/files"] == "events-feedback.csv"
            source = instance.get_latest_materialization_event(AssetKey("behaviour_source")).asset_materialization
            assert source.metadata["landed_feedback_rows"].value == 12          # the feedback was read
            assert source.metadata["rows"].value == len(events) + 12
            versions = registry.client().search_model_versions(f"name='{registry.model_name}'")
            gated = [int(v.version) for v in versions if (v.tags or {}).get("gate_decision")]
            assert max(gated) > int(first), "a new challenger was registered and gated"
    except AssertionError:
        print((home / "daemon.log").read_text()[-6000:])
        raise
