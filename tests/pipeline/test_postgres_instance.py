"""The committed production dagster.yaml stores runs and materialisations in real PostgreSQL."""
import shutil
from pathlib import Path

import psycopg2
import pytest
from dagster import AssetKey, DagsterInstance

from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.runner import run_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_materialisations_are_stored_in_postgres(isolated_env, postgres_db, monkeypatch):
    home = isolated_env / "dagster_home"
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    for key, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432",
                       "DAGSTER_PG_USERNAME": "postgres", "DAGSTER_PG_PASSWORD": "",
                       "DAGSTER_PG_DB": postgres_db}.items():
        monkeypatch.setenv(key, value)
    generate_demo(isolated_env / "assets" / "demo", n_items=40, n_users=10, seed=5)

    assert run_pipeline("demo", echo=lambda _: None)

    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_latest_materialization_event(AssetKey("item_catalogue")) is not None
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=postgres_db) as conn:
        cur = conn.cursor()
        cur.execute("SELECT status FROM runs")
        assert [row[0] for row in cur.fetchall()] == ["SUCCESS"]
        cur.execute("SELECT asset_key FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        stored = {row[0] for row in cur.fetchall()}
    assert {'["raw_images"]', '["behaviour_events"]', '["item_catalogue"]'} <= stored
