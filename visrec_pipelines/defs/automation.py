"""Sensors and a schedule: data arrives, models retrain and are promoted, serving follows —
without a person, for every dataset. The dagster-daemon runs them (``dagster dev`` starts one).

- ``catalogue_sensor``: new, changed or removed items/images → ``catalogue_refresh`` (validation,
  embeddings, tags, index) for those items only: ``raw_images`` and ``image_embeddings`` open and
  embed only new or changed files (file signature, content hash), and the run config names the
  changed items, so ``semantic_tags`` re-tags just them and ``item_index`` upserts/deletes just
  them in Milvus and the serving snapshot. A change bigger than a quarter of the catalogue (or
  than INCREMENTAL_LIMIT items) rebuilds tags and index from scratch instead.
- ``behaviour_sensor``: new landing files (feedback written by the serving API) or a new
  events.csv → ``retrain`` (validation, split, every ranker, evaluation, the promotion gate).
- ``nightly_retrain``: ``retrain`` of every dataset every night, new data or not (drift, a
  changed catalogue).

Each sensor looks at every dataset folder under the assets folder, makes a new one a partition
(``defs.partitions``), and keeps one cursor per dataset (a JSON object), so each change of each
dataset triggers one run of that dataset. Serving follows the registry's ``champion`` alias
itself, so a promotion needs no job of its own. ``Settings.sensor_interval`` sets how often they
look and ``Settings.automation`` off creates them stopped (switch them on in the UI).
"""
import json

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    schedule,
    sensor,
)

from .. import automation
from ..resources import DatasetsResource
from ..settings import Settings
from .partitions import DATASETS

CATALOGUE_ASSETS = ["catalogue_source", "raw_images", "quarantined_images", "item_catalogue",
                    "excluded_items", "image_embeddings", "product_colours", "text_embeddings", "tag_heads",
                    "semantic_tags", "similarity_space", "item_index", "text_search_index"]

catalogue_refresh = define_asset_job(
    "catalogue_refresh", selection=AssetSelection.assets(*CATALOGUE_ASSETS), partitions_def=DATASETS,
    description="New or changed images → validation → embeddings → tags → Milvus index.")
# everything, as `visrec run` materialises it; named, so a process of its own can rebuild it (runner.main_job)
main = define_asset_job("main", selection=AssetSelection.all(), partitions_def=DATASETS,
                        description="The whole graph: images, behaviour, embeddings, tags, rankers, gate, index.")
retrain = define_asset_job(
    "retrain", selection=AssetSelection.groups("behaviour", "rankers") | AssetSelection.assets("catalogue_source"),
    partitions_def=DATASETS, description="Behaviour validation → split → every ranker → evaluation → promotion gate.")


INCREMENTAL_LIMIT = 10_000   # more changed items than this (or a quarter of the catalogue): rebuild
# learned from the whole catalogue: an incremental refresh keeps them as the last full run left them
# (retraining them for a few new items would move every vector and so rebuild the whole index)
LEARNED_FROM_CATALOGUE = ("tag_heads", "similarity_space")


def refresh_selection(incremental: bool) -> list[AssetKey]:
    """What a catalogue_refresh run materialises: everything, or for named items all but the
    catalogue-wide models."""
    return [AssetKey(a) for a in CATALOGUE_ASSETS if not (incremental and a in LEARNED_FROM_CATALOGUE)]


def incremental_run_config(change, catalogue_size: int, have_baseline: bool) -> dict:
    """Run config telling tags and index to touch only the changed items, when that is worth it."""
    touched = change.added + change.changed
    if (not have_baseline or len(touched) + len(change.removed) > min(INCREMENTAL_LIMIT, catalogue_size / 4)):
        return {}
    return {"ops": {"semantic_tags": {"config": {"only_items": touched}},
                    "item_index": {"config": {"only_items": touched, "removed_items": change.removed}}}}


def _materialised_ns(context, asset: str, dataset: str) -> int:
    """When ``asset`` was last materialised for ``dataset`` (ns since the epoch), 0 if never."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[dataset]), limit=1).records
    return int(records[0].timestamp * 1e9) if records else 0


def _status(settings: Settings) -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if settings.automation else DefaultSensorStatus.STOPPED


def _per_dataset(context: SensorEvaluationContext, datasets: DatasetsResource, look) -> SensorResult:
    """Run ``look(name, cursor) -> (run request | None, skip reason | None, new cursor)`` for
    every dataset folder; new folders become partitions first, in the same tick."""
    try:
        cursors = json.loads(context.cursor) if context.cursor else {}
    except ValueError:        # a cursor of an older version, or damaged: look at every dataset afresh
        cursors = {}
    cursors = cursors if isinstance(cursors, dict) else {}
    known = set(context.instance.get_dynamic_partitions(DATASETS.name))
    names = datasets.available()
    requests, skipped = [], []
    for name in names:
        request, skip, cursors[name] = look(name, cursors.get(name))
        if request is not None:
            requests.append(request)
        elif skip:
            skipped.append(f"{name}: {skip}")
    new = sorted(set(names) - known)
    return SensorResult(run_requests=requests, cursor=json.dumps(cursors, sort_keys=True),
                        dynamic_partitions_requests=[DATASETS.build_add_request(new)] if new else [],
                        skip_reason=None if requests else ("; ".join(skipped) or "no datasets under the assets folder"))


def build_sensors(settings: Settings):
    """Built with the definitions, so the interval and status follow their settings."""
    interval, status = settings.sensor_interval, _status(settings)

    @sensor(job=catalogue_refresh, minimum_interval_seconds=interval, default_status=status,
            description="Items or images added, changed or removed → refresh the catalogue chain.")
    def catalogue_sensor(context: SensorEvaluationContext, datasets: DatasetsResource):
        def look(name: str, cursor: str | None):
            dataset = datasets.named(name)
            store = automation.FingerprintStore(dataset.warehouse.sensor_state("catalogue"))
            now = automation.catalogue_fingerprints(dataset.folder)
            indexed = _materialised_ns(context, "item_index", name)
            if not cursor and indexed and automation.latest_catalogue_change_ns(dataset.folder) <= indexed:
                return None, "first look: the index is newer than every catalogue file", store.save(now)
            change = automation.compare(store.load(cursor), now)
            if not change and cursor:
                return None, "catalogue unchanged", cursor
            key = store.save(now)
            examples = (change.added + change.changed + change.removed)[:20]
            run_config = incremental_run_config(change, len(now), bool(cursor))
            return RunRequest(run_key=f"catalogue-{name}-{key}", partition_key=name, run_config=run_config,
                              asset_selection=refresh_selection(incremental=bool(run_config)),
                              tags={"visrec/trigger": "catalogue", "visrec/change": change.summary(),
                                    "visrec/items": ",".join(examples)}), None, key

        return _per_dataset(context, datasets, look)

    @sensor(job=retrain, minimum_interval_seconds=interval, default_status=status,
            description="New behaviour landing files or a new events table → retrain and gate.")
    def behaviour_sensor(context: SensorEvaluationContext, datasets: DatasetsResource):
        def look(name: str, cursor: str | None):
            if not _materialised_ns(context, "image_embeddings", name):
                return None, "waiting for the catalogue's first materialisation (image_embeddings)", cursor
            files, events_changed, after = automation.new_behaviour_data(
                datasets.named(name).folder, automation.BehaviourCursor.parse(cursor),
                consumed_until_ns=_materialised_ns(context, "behaviour_events", name))
            if not files and not events_changed:
                return None, "no new behaviour data", after.dumps()
            what = f"{len(files)} new landing file(s)" + (", events.csv changed" if events_changed else "")
            run_key = f"behaviour-{name}-{after.events_signature}-{after.watermark_ns}-{len(after.edge)}"
            return RunRequest(run_key=run_key, partition_key=name, tags={
                "visrec/trigger": "behaviour", "visrec/change": what,
                "visrec/files": ",".join(files[:20])}), None, after.dumps()

        return _per_dataset(context, datasets, look)

    return [catalogue_sensor, behaviour_sensor]


def build_schedules(settings: Settings):
    status = DefaultScheduleStatus.RUNNING if settings.automation else DefaultScheduleStatus.STOPPED

    @schedule(name="nightly_retrain", job=retrain, cron_schedule="0 2 * * *", execution_timezone="UTC",
              default_status=status, description="Retrain, evaluate and gate every dataset every night at 02:00 UTC.")
    def nightly_retrain(context: ScheduleEvaluationContext):
        stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")   # one run per dataset per night
        return [RunRequest(run_key=f"nightly-{name}-{stamp}", partition_key=name)
                for name in context.instance.get_dynamic_partitions(DATASETS.name)]

    return [nightly_retrain]


JOBS = [main, catalogue_refresh, retrain]
