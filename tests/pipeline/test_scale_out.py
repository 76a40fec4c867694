"""The production path on one machine: the same code location with Dagster on PostgreSQL, each step
in its own process (multiprocess executor), and MLflow as a tracking server over HTTP, in one run.
(The Milvus server path is tested in tests/index/test_milvus_server.py.)"""
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from visrec_pipelines.data.demo import generate_demo

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def mlflow_server(tmp_path, free_port, spawn):
    port = free_port()
    proc = spawn(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", (tmp_path / "server-artifacts").as_uri(), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return url
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "mlflow server did not start"
            time.sleep(1)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_visrec_run_on_postgres_with_steps_in_processes_of_their_own_and_an_mlflow_server(
        tmp_path, postgres_db, stored_in_postgres, mlflow_server, monkeypatch):
    """``run_pipeline`` (what ``visrec run`` calls) with the production pieces: Dagster's storage in
    PostgreSQL, the multiprocess executor (the steps rebuild the job from the settings it hands them
    through the environment, and land in the same warehouse) and MLflow as a server over HTTP.
    (The command line ``dagster asset materialize`` path runs in test_celery.)"""
    from dagster import DagsterEventType

    from mlflow import MlflowClient
    from visrec_pipelines.runner import dagster_instance, run_pipeline
    from visrec_pipelines.settings import Settings

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    for key, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USERNAME": "postgres",
                       "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": postgres_db}.items():
        monkeypatch.setenv(key, value)
    settings = Settings(root=tmp_path, assets=tmp_path / "assets", warehouse=tmp_path / "warehouse",
                        dagster_home=home, dataset="demo", executor="multiprocess", max_concurrent=2,
                        automation=False, mlflow_tracking_uri=mlflow_server)
    generate_demo(tmp_path / "assets" / "demo", n_items=40, n_users=16, seed=5)
    ours = ("VISREC_", "DAGSTER_HOME", "MLFLOW_TRACKING_URI", "MILVUS_")
    before = {k: v for k, v in os.environ.items() if k.startswith(ours)}
    assert run_pipeline(echo=lambda _: None, settings=settings)
    assert {k: v for k, v in os.environ.items() if k.startswith(ours)} == before   # lent, not left behind

    with dagster_instance(settings) as instance:
        run = instance.get_runs(limit=1)[0]
        workers = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_WORKER_STARTED).records
        assert run.tags["dagster/partition"] == "demo" and len(workers) >= 10    # steps in their own processes
    assert (tmp_path / "warehouse" / "demo" / "item_index.npz").exists()
    stored_in_postgres(min_assets=20)

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    champion = client.get_model_version_by_alias("visrec-ranker-demo", "champion")
    assert champion.tags.get("gate_decision") == "promoted"
    assert not (tmp_path / "mlflow" / "mlflow.db").exists()      # nothing fell back to the local store
