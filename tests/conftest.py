"""Shared fixtures. Tests needing PostgreSQL or ../shared/datasets skip on a developer's machine
without them, but FAIL in CI (CI=true), where both must be present."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("VISREC_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))
MOVIELENS = SHARED_DATASETS / "movielens-small"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def movielens_path() -> Path:
    require((MOVIELENS / "ratings.csv").is_file(), f"MovieLens not found at {MOVIELENS}")
    return MOVIELENS


def postgres_reachable(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require(postgres_reachable(), "PostgreSQL is not reachable on 127.0.0.1:5432")
    return "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Point every visrec location (assets, warehouse, Dagster home) into tmp_path."""
    monkeypatch.setenv("VISREC_ROOT", str(tmp_path))
    monkeypatch.setenv("VISREC_ASSETS", str(tmp_path / "assets"))
    monkeypatch.setenv("VISREC_WAREHOUSE", str(tmp_path / "warehouse"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return tmp_path
