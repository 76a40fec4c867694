"""A tiny shop for the serving tests: the demo generator's images, their real encoder vectors in an
index snapshot (tagged with the demo's labels), and champions registered in MLflow the way the
pipeline registers them (promotion.log_ranker + set_champion), without running the Dagster job."""
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from visrec_pipelines import promotion
from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.index.exact import ExactIndex
from visrec_pipelines.recsys.bundle import RankerBundle
from visrec_pipelines.recsys.split import make_split
from visrec_pipelines.serving.settings import ServingSettings

REPO = Path(__file__).resolve().parents[2]
N_ITEMS, N_USERS = 48, 16


class Shop:
    def __init__(self, root: Path, base: str, index: ExactIndex, split):
        self.root, self.base, self.index, self.split = root, base, index, split

    @property
    def assets(self) -> Path:
        return self.root / "assets"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    def dataset(self, name: str) -> str:
        """A fresh dataset ``name``: a copy of the base shop and its index snapshot, no champion."""
        if not (self.assets / name).exists():
            shutil.copytree(self.assets / self.base, self.assets / name)
            (self.warehouse / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(self.warehouse / self.base / "item_index.npz", self.warehouse / name / "item_index.npz")
        return name

    def register(self, dataset: str, ranker_name: str = "bpr", champion: bool = True, **params) -> str:
        bundle = RankerBundle.from_training(fit(ranker_name, self.split, **params), self.split.train)
        _, version = promotion.log_ranker(bundle, ranker_name, dataset, {}, {}, {})
        if champion:
            promotion.set_champion(dataset, version)
        return version

    def settings(self, dataset: str, **overrides) -> ServingSettings:
        return ServingSettings(dataset=dataset, assets_dir=self.assets, warehouse_dir=self.warehouse,
                               api_key=overrides.pop("api_key", None), poll_seconds=overrides.pop("poll_seconds", 0.2),
                               **overrides)

    def items(self, dataset: str | None = None) -> pd.DataFrame:
        return pd.read_csv(self.assets / (dataset or self.base) / "items.csv", dtype=str)


def fit(name: str, split, **params):
    from visrec_pipelines.recsys import zoo

    zoo.names()
    defaults = {"bpr": {"factors": 8, "epochs": 15, "patience": None}}.get(name, {})
    return zoo.FACTORIES[name](**{**defaults, **params}).fit(split.train)


def typed_events(events: pd.DataFrame) -> pd.DataFrame:
    """What behaviour_events hands the split: value float (empty = 1), timestamp UTC."""
    return events.assign(value=pd.to_numeric(events["value"]).fillna(1.0),
                         timestamp=pd.to_datetime(events["timestamp"], utc=True, format="ISO8601"))


# MLflow (promotion.*) finds its store through VISREC_ROOT, and background threads (the watcher)
# read it at any moment, so the serving tests keep it set from the shop's creation until their
# last test, then restore it (pytest_runtest_teardown below): later test modules see no trace.
_ENV = pytest.MonkeyPatch()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield                      # after this item's fixtures are torn down
    if nextitem is None or Path(str(nextitem.fspath)).parent != Path(__file__).parent:
        _ENV.undo()
    return result


@pytest.fixture(scope="session")
def shop(tmp_path_factory) -> Shop:
    root = tmp_path_factory.mktemp("serving")
    for key, sub in {"VISREC_ROOT": "", "VISREC_ASSETS": "assets", "VISREC_WAREHOUSE": "warehouse"}.items():
        _ENV.setenv(key, str(root / sub))
    _ENV.delenv("VISREC_API_KEY", raising=False)
    _ENV.delenv("MLFLOW_TRACKING_URI", raising=False)
    ds = generate_demo(root / "assets" / "demo", n_items=N_ITEMS, n_users=N_USERS, seed=5)
    items = ds.read_items()
    from visrec_pipelines.serving.image_search import _encoder
    from visrec_pipelines.vision.images import load_rgb

    encoder = _encoder("efficientnet-lite0", None)
    batch = np.stack([encoder.preprocessing.to_tensor(load_rgb(ds.root / p)[0]) for p in items["image_path"]])
    vectors = encoder.encode(batch).features
    tags = [[r.category, r.colour, r.pattern] for r in items.itertuples()]
    index = ExactIndex(items["item_id"], vectors, items["category"], tags, source="visrec_items_demo_test_1")
    index.save(root / "warehouse" / "demo" / "item_index.npz")
    pd.DataFrame({"item_id": items["item_id"], "encoder_id": encoder.encoder_id}).to_parquet(
        root / "warehouse" / "demo" / "image_embeddings.parquet")
    split = make_split(typed_events(ds.read_events()), items["item_id"], min_positives=2)
    shop = Shop(root, "demo", index, split)
    shop.register("demo", "bpr")
    yield shop
    _ENV.undo()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60, status: int = 200, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            last = httpx.get(url, timeout=2)
            if last.status_code == status:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: {last!r})")


def python() -> str:
    return sys.executable


def artifact_file(dataset: str, version: str) -> Path:
    """The pickled bundle inside a registered version's stored artifacts (to corrupt it on purpose)."""
    from urllib.parse import urlparse

    from visrec_pipelines import tracking

    mlflow = tracking.configure("visrec-rankers")
    source = mlflow.MlflowClient().get_model_version(promotion.model_name(dataset), version).source
    location = mlflow.get_logged_model(source.rsplit("/", 1)[-1]).artifact_location
    return next(Path(urlparse(location).path).rglob("bundle.pkl"))


@pytest.fixture(scope="session")
def app_factory(shop):
    """Build an app (no background threads) on a dataset and load its state once."""
    from visrec_pipelines.serving.app import create_app

    def build(dataset: str = "demo", load: bool = True, **overrides):
        app = create_app(shop.settings(dataset, **overrides), start_background=False)
        if load:
            app.state.manager.reload()
        return app

    return build


@pytest.fixture(scope="session")
def client(app_factory):
    """A test client on the base shop, state loaded."""
    from fastapi.testclient import TestClient

    with TestClient(app_factory("demo")) as test_client:
        yield test_client
