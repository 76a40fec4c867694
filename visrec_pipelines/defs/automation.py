"""Sensors and a schedule: data arrives, models retrain and are promoted, serving follows —
without a person. The dagster-daemon runs them (``dagster dev`` starts one).

- ``catalogue_sensor``: new, changed or removed items/images → ``catalogue_refresh`` (validation,
  embeddings, tags, index) for those items only: ``raw_images`` and ``image_embeddings`` open and
  embed only new or changed files (file signature, content hash), and the run config names the
  changed items, so ``semantic_tags`` re-tags just them and ``item_index`` upserts/deletes just
  them in Milvus and the serving snapshot. A change bigger than a quarter of the catalogue (or
  than INCREMENTAL_LIMIT items) rebuilds tags and index from scratch instead.
- ``behaviour_sensor``: new landing files (feedback written by the serving API) or a new
  events.csv → ``retrain`` (validation, split, every ranker, evaluation, the promotion gate).
- ``champion_sensor``: the registry's ``champion`` alias moved → ``publish_champion``.
- ``nightly_retrain``: ``retrain`` every night, new data or not (drift, a changed catalogue).

VISREC_SENSOR_INTERVAL (seconds, default 30) sets how often sensors look; VISREC_AUTOMATION=off
creates them stopped (they can be switched on in the UI).
"""

import os

from dagster import (AssetKey, AssetSelection, DefaultScheduleStatus, DefaultSensorStatus, RunRequest,
                     ScheduleDefinition, SensorEvaluationContext, SensorResult, SkipReason,
                     define_asset_job, sensor)

from .. import automation, promotion, settings
from ..data.contract import Dataset

CATALOGUE_ASSETS = ["catalogue_source", "raw_images", "quarantined_images", "item_catalogue",
                    "excluded_items", "image_embeddings", "tag_heads", "semantic_tags", "item_index"]

catalogue_refresh = define_asset_job(
    "catalogue_refresh", selection=AssetSelection.assets(*CATALOGUE_ASSETS),
    description="New or changed images → validation → embeddings → tags → Milvus index.")
retrain = define_asset_job(
    "retrain", selection=AssetSelection.groups("behaviour", "rankers") | AssetSelection.assets("catalogue_source"),
    description="Behaviour validation → split → every ranker → evaluation → promotion gate.")
publish_champion = define_asset_job(
    "publish_champion", selection=AssetSelection.assets("champion_vectors"),
    description="The champion's vectors into the index and the snapshot serving loads.")


def _interval() -> int:
    return int(os.environ.get("VISREC_SENSOR_INTERVAL", "30"))


def _status():
    on = os.environ.get("VISREC_AUTOMATION", "on").lower() not in ("off", "0", "false", "no")
    return DefaultSensorStatus.RUNNING if on else DefaultSensorStatus.STOPPED


def _dataset() -> Dataset:
    return Dataset(settings.assets_dir() / settings.dataset_name())


INCREMENTAL_LIMIT = 10_000   # more changed items than this (or a quarter of the catalogue): rebuild


def incremental_run_config(change, catalogue_size: int, have_baseline: bool) -> dict:
    """Run config telling tags and index to touch only the changed items, when that is worth it."""
    touched = change.added + change.changed
    if (not have_baseline or len(touched) + len(change.removed) > min(INCREMENTAL_LIMIT, catalogue_size / 4)):
        return {}
    return {"ops": {"semantic_tags": {"config": {"only_items": touched}},
                    "item_index": {"config": {"only_items": touched, "removed_items": change.removed}}}}


def _materialised_ns(context: SensorEvaluationContext, asset: str) -> int:
    """When ``asset`` was last materialised (ns since the epoch), 0 if never."""
    event = context.instance.get_latest_materialization_event(AssetKey(asset))
    return int(event.timestamp * 1e9) if event is not None else 0


def build_sensors():
    """Built when the code location loads, so the interval and status follow the environment."""

    @sensor(job=catalogue_refresh, minimum_interval_seconds=_interval(), default_status=_status(),
            description="Items or images added, changed or removed → refresh the catalogue chain.")
    def catalogue_sensor(context: SensorEvaluationContext):
        dataset = _dataset()
        if not dataset.items_path.exists():
            return SkipReason(f"no items table at {dataset.items_path}")
        store = automation.FingerprintStore(settings.warehouse_dir() / dataset.name / "sensors" / "catalogue")
        now = automation.catalogue_fingerprints(dataset)
        indexed = _materialised_ns(context, "item_index")
        if not context.cursor and indexed and automation.latest_catalogue_change_ns(dataset) <= indexed:
            return SensorResult(skip_reason="first look: the index is newer than every catalogue file",
                                cursor=store.save(now))
        change = automation.compare(store.load(context.cursor), now)
        if not change and context.cursor:
            return SkipReason("catalogue unchanged")
        key = store.save(now)
        examples = (change.added + change.changed + change.removed)[:20]
        return SensorResult(run_requests=[RunRequest(
            run_key=f"catalogue-{key}", run_config=incremental_run_config(change, len(now), bool(context.cursor)),
            tags={"visrec/trigger": "catalogue", "visrec/change": change.summary(),
                  "visrec/items": ",".join(examples)})], cursor=key)

    @sensor(job=retrain, minimum_interval_seconds=_interval(), default_status=_status(),
            description="New behaviour landing files or a new events table → retrain and gate.")
    def behaviour_sensor(context: SensorEvaluationContext):
        dataset = _dataset()
        if context.instance.get_latest_materialization_event(AssetKey("image_embeddings")) is None:
            return SkipReason("waiting for the catalogue's first materialisation (image_embeddings)")
        cursor = automation.BehaviourCursor.parse(context.cursor)
        files, events_changed, after = automation.new_behaviour_data(
            dataset, cursor, consumed_until_ns=_materialised_ns(context, "behaviour_events"))
        if not files and not events_changed:
            return SkipReason("no new behaviour data")
        what = f"{len(files)} new landing file(s)" + (", events.csv changed" if events_changed else "")
        run_key = f"behaviour-{after.events_signature}-{after.watermark_ns}-{len(after.edge)}"
        return SensorResult(run_requests=[RunRequest(run_key=run_key, tags={
            "visrec/trigger": "behaviour", "visrec/change": what,
            "visrec/files": ",".join(files[:20])})], cursor=after.dumps())

    @sensor(job=publish_champion, minimum_interval_seconds=_interval(), default_status=_status(),
            description="The MLflow champion alias moved → publish its vectors for serving.")
    def champion_sensor(context: SensorEvaluationContext):
        champion = promotion.current_champion(settings.dataset_name())
        if champion is None:
            return SkipReason("no champion yet")
        version = str(champion.version)
        if version == context.cursor:
            return SkipReason(f"champion still v{version}")
        return SensorResult(run_requests=[RunRequest(run_key=f"champion-{version}-{context.cursor or 'none'}",
                                                     tags={"visrec/trigger": "champion",
                                                           "visrec/champion": version})], cursor=version)

    return [catalogue_sensor, behaviour_sensor, champion_sensor]


def build_schedules():
    status = (DefaultScheduleStatus.RUNNING if _status() == DefaultSensorStatus.RUNNING
              else DefaultScheduleStatus.STOPPED)
    return [ScheduleDefinition(name="nightly_retrain", job=retrain, cron_schedule="0 2 * * *",
                               execution_timezone="UTC", default_status=status,
                               description="Retrain, evaluate and gate every night at 02:00 UTC.")]


JOBS = [catalogue_refresh, retrain, publish_champion]
