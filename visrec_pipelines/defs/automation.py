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
- ``nightly_retrain``: ``retrain`` every night, new data or not (drift, a changed catalogue).

Serving follows the registry's ``champion`` alias itself, so a promotion needs no job of its own.
Sensors read the dataset and warehouse from the definitions' resources; ``Settings.sensor_interval``
sets how often they look and ``Settings.automation`` off creates them stopped (switch them on in
the UI).
"""

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from .. import automation
from ..resources import DatasetResource
from ..settings import Settings

CATALOGUE_ASSETS = ["catalogue_source", "raw_images", "quarantined_images", "item_catalogue",
                    "excluded_items", "image_embeddings", "tag_heads", "semantic_tags", "item_index"]

catalogue_refresh = define_asset_job(
    "catalogue_refresh", selection=AssetSelection.assets(*CATALOGUE_ASSETS),
    description="New or changed images → validation → embeddings → tags → Milvus index.")
retrain = define_asset_job(
    "retrain", selection=AssetSelection.groups("behaviour", "rankers") | AssetSelection.assets("catalogue_source"),
    description="Behaviour validation → split → every ranker → evaluation → promotion gate.")


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


def _status(settings: Settings) -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if settings.automation else DefaultSensorStatus.STOPPED


def build_sensors(settings: Settings):
    """Built with the definitions, so the interval and status follow their settings."""
    interval, status = settings.sensor_interval, _status(settings)

    @sensor(job=catalogue_refresh, minimum_interval_seconds=interval, default_status=status,
            description="Items or images added, changed or removed → refresh the catalogue chain.")
    def catalogue_sensor(context: SensorEvaluationContext, dataset: DatasetResource):
        store = automation.FingerprintStore(dataset.warehouse.sensor_state("catalogue"))
        folder = dataset.dataset
        if not folder.items_path.exists():
            return SkipReason(f"no items table at {folder.items_path}")
        now = automation.catalogue_fingerprints(folder)
        indexed = _materialised_ns(context, "item_index")
        if not context.cursor and indexed and automation.latest_catalogue_change_ns(folder) <= indexed:
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

    @sensor(job=retrain, minimum_interval_seconds=interval, default_status=status,
            description="New behaviour landing files or a new events table → retrain and gate.")
    def behaviour_sensor(context: SensorEvaluationContext, dataset: DatasetResource):
        if context.instance.get_latest_materialization_event(AssetKey("image_embeddings")) is None:
            return SkipReason("waiting for the catalogue's first materialisation (image_embeddings)")
        cursor = automation.BehaviourCursor.parse(context.cursor)
        files, events_changed, after = automation.new_behaviour_data(
            dataset.dataset, cursor, consumed_until_ns=_materialised_ns(context, "behaviour_events"))
        if not files and not events_changed:
            return SkipReason("no new behaviour data")
        what = f"{len(files)} new landing file(s)" + (", events.csv changed" if events_changed else "")
        run_key = f"behaviour-{after.events_signature}-{after.watermark_ns}-{len(after.edge)}"
        return SensorResult(run_requests=[RunRequest(run_key=run_key, tags={
            "visrec/trigger": "behaviour", "visrec/change": what,
            "visrec/files": ",".join(files[:20])})], cursor=after.dumps())

    return [catalogue_sensor, behaviour_sensor]


def build_schedules(settings: Settings):
    status = DefaultScheduleStatus.RUNNING if settings.automation else DefaultScheduleStatus.STOPPED
    return [ScheduleDefinition(name="nightly_retrain", job=retrain, cron_schedule="0 2 * * *",
                               execution_timezone="UTC", default_status=status,
                               description="Retrain, evaluate and gate every night at 02:00 UTC.")]


JOBS = [catalogue_refresh, retrain]
