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


def reachable(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require(reachable(), "PostgreSQL is not reachable on 127.0.0.1:5432")
    return "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def rabbitmq_broker() -> str:
    require(reachable("127.0.0.1", 5672), "RabbitMQ is not reachable on 127.0.0.1:5672")
    return "pyamqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def settings(tmp_path):
    """Settings with every visrec location (assets, warehouse, Dagster home, MLflow) in tmp_path:
    what in-process code is handed instead of reading the environment."""
    from visrec_pipelines.settings import Settings

    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return Settings(root=tmp_path, assets=tmp_path / "assets", warehouse=tmp_path / "warehouse",
                    dagster_home=tmp_path / "dagster_home")


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """The same locations as environment variables, for what reads them: the ``visrec`` command
    line and the Dagster processes (webserver, daemon, CLI) a test starts."""
    monkeypatch.setenv("VISREC_ROOT", str(tmp_path))
    monkeypatch.setenv("VISREC_ASSETS", str(tmp_path / "assets"))
    monkeypatch.setenv("VISREC_WAREHOUSE", str(tmp_path / "warehouse"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return tmp_path


@pytest.fixture
def postgres_db(postgres_url):
    """A fresh, empty PostgreSQL database (its name), dropped afterwards."""
    import uuid

    import psycopg2

    name = f"visrec_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield name
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def stored_in_postgres(postgres_db):
    """Checks that ``postgres_db`` holds exactly one Dagster run, successful, with at least
    ``min_assets`` assets materialised; returns an open cursor on it for more questions."""
    import psycopg2

    connections = []

    def check(min_assets: int = 20):
        conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=postgres_db)
        connections.append(conn)
        cur = conn.cursor()
        cur.execute("SELECT status FROM runs")
        assert [row[0] for row in cur.fetchall()] == ["SUCCESS"]
        cur.execute("SELECT count(DISTINCT asset_key) FROM event_logs "
                    "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cur.fetchone()[0] >= min_assets
        return cur

    yield check
    for conn in connections:
        conn.close()


@pytest.fixture
def free_port():
    """A callable giving a TCP port on 127.0.0.1 that is free right now."""
    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return pick


@pytest.fixture
def spawn():
    """Start a background process in its own process group; at teardown the group is interrupted
    (SIGINT, as Ctrl-C would), then killed if it has not exited within 20 s."""
    import signal
    import subprocess

    started = []

    def start(args, **kwargs):
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def truncate_bundle():
    """A function truncating a registered version's ``bundle.pkl`` in a local MLflow store (a torn
    upload, a full disk): ``truncate_bundle(registry, version) -> the file``."""
    return _truncate_bundle


def _truncate_bundle(registry, version: str) -> Path:
    model_id = registry.client().get_model_version(registry.model_name, version).source.split("/")[-1]
    artifacts = registry.project_root / "mlflow" / "artifacts"
    (path,) = artifacts.glob(f"**/{model_id}/**/bundle.pkl")
    path.write_bytes(path.read_bytes()[:100])
    return path


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's chromium, headless, driven by selenium through its chromedriver (no download)."""
    require(Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file(),
            "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "selenium is not installed (pip install -e '.[dev]')")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1400",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
