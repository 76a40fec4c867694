"""The graph on Dagster's Celery executor: steps queued on the RabbitMQ broker (127.0.0.1:5672), run by
two Celery worker processes started here, runs and events in PostgreSQL. The embedding fans out as one
step per shard; the shards land in the one store without duplicates."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from visrec_pipelines.data.demo import generate_demo

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
QUEUE = "dagster"       # the queue the executor and the workers share (Settings.celery_queue)


@pytest.fixture
def production_env(isolated_env, postgres_db, rabbitmq_broker, monkeypatch):
    """What every machine of the deployment shares: the instance in PostgreSQL, the executor's broker."""
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", isolated_env / "dagster_home" / "dagster.yaml")
    env = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USERNAME": "postgres",
           "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": postgres_db, "VISREC_EXECUTOR": "celery",
           "VISREC_CELERY_BROKER": rabbitmq_broker, "VISREC_CELERY_QUEUE": QUEUE, "VISREC_AUTOMATION": "off",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}      # `dagster-celery` runs `celery`
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return isolated_env


@pytest.fixture
def celery_workers(production_env, spawn, tmp_path, rabbitmq_broker):
    """Two Celery workers (one process each) taking steps from the queue, started as deploy/celery says;
    their logs say what they ran."""
    config = REPO / "deploy" / "celery" / "celery.yaml"
    # steps left on the queue by an earlier, killed run would be taken first: start empty
    subprocess.run([str(BIN / "celery"), "-A", "dagster_celery.app", "-b", rabbitmq_broker, "purge", "-f", "-Q", QUEUE],
                   check=True, capture_output=True, timeout=60)
    logs = []
    for name in ("w1", "w2"):
        log = tmp_path / f"{name}.log"
        spawn([str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(config),
               "-q", QUEUE, "-n", name, "--", "--concurrency", "1", "--logfile", str(log)],
              env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        logs.append(log)
    deadline = time.time() + 120
    while not all(log.exists() and "ready." in log.read_text() for log in logs):
        assert time.time() < deadline, "the Celery workers did not start"
        time.sleep(1)
    return logs


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_whole_graph_on_celery_workers_with_embedding_shards(production_env, stored_in_postgres, celery_workers):
    generate_demo(production_env / "assets" / "demo", n_items=40, n_users=16, seed=5)
    from dagster import DagsterInstance

    from visrec_pipelines.defs.partitions import register_dataset

    with DagsterInstance.get() as instance:
        register_dataset(instance, "demo")
    run_config = {"ops": {"image_embeddings": {"config": {"parallel_shards": 3, "batch_size": 8}}}}
    done = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "visrec_pipelines.definitions",
                           "--select", "*", "--partition", "demo", "--config-json", json.dumps(run_config)],
                          env=dict(os.environ), capture_output=True, text=True, timeout=1100)
    assert done.returncode == 0, done.stderr[-4000:]

    cur = stored_in_postgres(min_assets=20)
    cur.execute("SELECT DISTINCT step_key FROM event_logs WHERE step_key LIKE 'image_embeddings.embed_shard%%' "
                "AND dagster_event_type = 'STEP_SUCCESS'")
    assert len(cur.fetchall()) == 3                              # one step per shard

    ran = [log.read_text().count("execute_plan") for log in celery_workers]
    assert all(count > 0 for count in ran), f"steps per worker log: {ran}"   # both workers took steps

    from dagster import AssetKey

    from visrec_pipelines.settings import Settings
    from visrec_pipelines.vision.embedding_store import EmbeddingStore

    warehouse = Settings().warehouse_for("demo")
    catalogue = warehouse.read_table("raw_images")
    with DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(AssetKey("image_embeddings"))
        metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert metadata["parallel_shards"] == 3
    assert metadata["embedded_now"] == len(catalogue) and metadata["failures"] == 0   # each item by one shard
    store = EmbeddingStore(warehouse.embeddings_dir, metadata["encoder_id"])
    item_ids = store.load()[0]
    assert sorted(item_ids) == sorted(catalogue["item_id"])                 # every item once, none twice
