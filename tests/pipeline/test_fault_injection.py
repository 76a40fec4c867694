"""Every persisted state the pipeline reads back, damaged on purpose: the next run repairs it or
falls back, and says so in the asset's metadata (or, where only the user can act, fails with a
message naming the file and the fix). One small shop, materialised once, then hurt state by state."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterRunStatus

from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.definitions import build_definitions
from visrec_pipelines.runner import HOST_TAG, PID_TAG, dagster_instance, fail_abandoned_runs, run_pipeline
from visrec_pipelines.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    settings = Settings(root=root, assets=root / "assets", warehouse=root / "warehouse",
                        dagster_home=root / "dagster_home", dataset="demo", automation=False)
    generate_demo(settings.assets_dir / "demo", n_items=40, n_users=14, seed=8)
    assert run_pipeline(echo=lambda _: None, settings=settings)
    return settings


def refresh(settings, run_config=None) -> dict:
    """catalogue_refresh, then {asset: metadata} of what it materialised."""
    job = build_definitions(settings).resolve_job_def("catalogue_refresh")
    with dagster_instance(settings) as instance:
        result = job.execute_in_process(instance=instance, run_config=run_config or {}, partition_key="demo",
                                        raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return {key: {k: v.value for k, v in instance.get_latest_materialization_event(AssetKey(key))
                      .asset_materialization.metadata.items()}
                for key in ("raw_images", "image_embeddings", "semantic_tags", "item_index")}


def incremental(settings) -> dict:
    """The run config the catalogue sensor gives for one changed item."""
    item = settings.dataset_folder().read_items()["item_id"].iloc[0]
    return {"ops": {"semantic_tags": {"config": {"only_items": [item]}},
                    "item_index": {"config": {"only_items": [item], "removed_items": []}}}}


def image_store(settings) -> Path:
    """The image encoder's embedding store (text and colour descriptors have stores beside it)."""
    warehouse = settings.warehouse_for()
    encoder_id = warehouse.read_table("image_embeddings")["encoder_id"].iloc[0]
    return warehouse.embeddings_dir / encoder_id.replace(":", "_")


def test_a_torn_embedding_chunk_is_set_aside_and_embedded_again(shop):
    (chunk,) = image_store(shop).glob("chunks/*.parquet")                       # compacted: one chunk
    chunk.write_bytes(chunk.read_bytes()[:-64])
    embeddings = refresh(shop)["image_embeddings"]
    assert "moved to corrupt/" in embeddings["repairs"] and embeddings["embedded_now"] == 40


def test_a_garbage_embedding_manifest_is_rebuilt(shop):
    manifest = image_store(shop) / "manifest.json"
    manifest.write_text("{ not json")
    embeddings = refresh(shop)["image_embeddings"]
    assert "manifest.json was unreadable" in embeddings["repairs"] and embeddings["embedded_now"] == 0


def test_garbage_image_checks_only_cost_a_recheck(shop):
    shop.warehouse_for().image_checks.write_bytes(b"\x00\xff garbage")
    assert refresh(shop)["raw_images"]["opened_now"] == 40


def test_a_torn_index_snapshot_means_a_full_rebuild(shop):
    snapshot = shop.warehouse_for().item_index_snapshot
    snapshot.write_bytes(snapshot.read_bytes()[:500])
    index = refresh(shop, incremental(shop))["item_index"]
    assert index["mode"] == "full" and "item_index.npz could not be read" in index["repairs"]


def test_an_unreadable_tag_table_means_tagging_everything(shop):
    shop.warehouse_for().table_path("semantic_tags").write_bytes(b"PAR1 torn")
    tags = refresh(shop, incremental(shop))["semantic_tags"]
    assert tags["mode"] == "full" and tags["tagged_now"] == 40 and "could not be read" in tags["repairs"]


def test_a_damaged_milvus_lite_database_is_rebuilt(shop):
    (shop.warehouse_for().milvus_lite_file() / "aliases.json").write_text("garbage")
    index = refresh(shop, incremental(shop))["item_index"]
    assert index["mode"] == "full" and index["indexed"] == 40
    assert "moved to milvus.db.corrupt-" in index["repairs"]


def test_garbage_sensor_state_means_one_full_refresh(shop):
    from dagster import build_sensor_context

    from visrec_pipelines.defs.automation import build_sensors
    from visrec_pipelines.resources import default_resources

    sensor = {s.name: s for s in build_sensors(shop)}["catalogue_sensor"]
    state = shop.warehouse_for().sensor_state("catalogue")
    state.mkdir(parents=True, exist_ok=True)
    (state / "deadbeef.json").write_text("{ torn")
    with dagster_instance(shop) as instance:
        result = sensor(build_sensor_context(instance=instance, cursor='{"demo": "deadbeef"}',
                                             resources=default_resources(shop)))
        (request,) = result.run_requests
        assert request.run_config == {} and request.tags["visrec/change"] == "40 added, 0 changed, 0 removed"
        # a cursor that is not even JSON (an older version's, say) is a first look, not a crash
        result = sensor(build_sensor_context(instance=instance, cursor="deadbeef",
                                             resources=default_resources(shop)))
    assert not result.run_requests and "first look" in result.skip_reason.skip_message
    assert json.loads(result.cursor)["demo"]


def test_a_damaged_upstream_value_names_the_file_and_the_fix(shop):
    shop.warehouse_for().table_path("image_embeddings").write_bytes(b"not parquet")
    job = build_definitions(shop).resolve_job_def("retrain")          # reads image_embeddings as input
    with dagster_instance(shop) as instance:
        result = job.execute_in_process(instance=instance, partition_key="demo", raise_on_error=False)
    error, message = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error, ""
    while error is not None:                                          # Dagster wraps our error
        message, error = message + error.message, error.cause
    assert "image_embeddings.parquet cannot be read" in message and "materialise image_embeddings again" in message
    refresh(shop)                                                       # the fix it names works


def test_a_run_whose_process_died_is_not_left_started(shop):
    from dagster._core.test_utils import create_run_for_test

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with dagster_instance(shop) as instance:
        run = create_run_for_test(instance, job_name="__ASSET_JOB", status=DagsterRunStatus.STARTED,
                                  tags={HOST_TAG: os.uname().nodename, PID_TAG: dead.stdout.strip()})
        alive = create_run_for_test(instance, job_name="__ASSET_JOB", status=DagsterRunStatus.STARTED,
                                    tags={HOST_TAG: os.uname().nodename, PID_TAG: str(os.getpid())})
        said = fail_abandoned_runs(instance)
        assert len(said) == 1 and run.run_id in said[0]
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED


def test_after_all_that_the_main_job_still_succeeds(shop):
    assert run_pipeline(echo=lambda _: None, settings=shop)
    assert len(pd.read_parquet(shop.warehouse_for().table_path("item_index"))) == 40
