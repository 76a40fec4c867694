"""A tiny shop for the serving tests: the demo generator's images, their real encoder vectors in an
index snapshot (tagged with the demo's labels), and champions registered in MLflow the way the
pipeline registers them (Registry.log_ranker + set_champion), without running the Dagster job.
The tests build their ``Settings`` explicitly (``Shop.settings``) instead of patching the environment."""
import os
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

from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.index.exact import ExactIndex
from visrec_pipelines.recsys.bundle import RankerBundle
from visrec_pipelines.recsys.split import make_split
from visrec_pipelines.registry import Registry
from visrec_pipelines.settings import Settings
from visrec_pipelines.vision import DEFAULT_ENCODER

REPO = Path(__file__).resolve().parents[2]
N_ITEMS, N_USERS = 48, 16


class Shop:
    def __init__(self, root: Path, base: str, index: ExactIndex | None, split):
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
            for served in ("item_index.npz", "text_search.npz"):
                shutil.copy(self.warehouse / self.base / served, self.warehouse / name / served)
        return name

    def registry(self, dataset: str) -> Registry:
        return self.settings(dataset).registry()

    def register(self, dataset: str, ranker_name: str = "bpr", champion: bool = True, **params) -> str:
        bundle = RankerBundle.from_training(fit(ranker_name, self.split, **params), self.split.train)
        registry = self.registry(dataset)
        _, version = registry.log_ranker(bundle, ranker_name, {}, {}, {})
        if champion:
            registry.set_champion(version)
        return version

    def settings(self, dataset: str, **overrides) -> Settings:
        """Locations, stores and serving knobs explicit: a developer's VISREC_* / MLFLOW_* variables
        cannot point the tests elsewhere."""
        fields = dict(root=self.root, assets=self.assets, warehouse=self.warehouse, dataset=dataset,
                      mlflow_tracking_uri=None, milvus_uri=None, milvus_token="", api_key=None,
                      serving_poll_s=0.2, encoder=DEFAULT_ENCODER, serving_encoder=None, encoder_weights=None,
                      index_source="snapshot")
        return Settings(**{**fields, **overrides})

    def environment(self, dataset: str) -> dict:
        """The same settings as environment variables, for a `visrec serve` subprocess."""
        others = ("MLFLOW_TRACKING_URI", "MILVUS_URI", "MILVUS_TOKEN")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("VISREC_") and k not in others}
        return {**environment, "VISREC_ROOT": str(self.root), "VISREC_ASSETS": str(self.assets),
                "VISREC_WAREHOUSE": str(self.warehouse), "VISREC_DATASET": dataset}

    def artifact_file(self, dataset: str, version: str) -> Path:
        """The pickled bundle inside a registered version's stored artifacts (to corrupt it on purpose)."""
        from urllib.parse import urlparse

        registry = self.registry(dataset)
        mlflow = registry.mlflow()
        source = mlflow.MlflowClient().get_model_version(registry.model_name, version).source
        location = mlflow.get_logged_model(source.rsplit("/", 1)[-1]).artifact_location
        return next(Path(urlparse(location).path).rglob("bundle.pkl"))

    def items(self, dataset: str | None = None) -> pd.DataFrame:
        return pd.read_csv(self.assets / (dataset or self.base) / "items.csv", dtype=str)


def fit(name: str, split, **params):
    from visrec_pipelines.recsys import zoo

    defaults = {"bpr": {"factors": 8, "epochs": 15, "patience": None}}.get(name, {})
    return zoo.rankers()[name](**{**defaults, **params}).fit(split.train)


def typed_events(events: pd.DataFrame) -> pd.DataFrame:
    """What behaviour_events hands the split: value float (empty = 1), timestamp UTC."""
    return events.assign(value=pd.to_numeric(events["value"]).fillna(1.0),
                         timestamp=pd.to_datetime(events["timestamp"], utc=True, format="ISO8601"))


@pytest.fixture(scope="session")
def shop(tmp_path_factory) -> Shop:
    root = tmp_path_factory.mktemp("serving")
    ds = generate_demo(root / "assets" / "demo", n_items=N_ITEMS, n_users=N_USERS, seed=5)
    items = ds.read_items()
    from visrec_pipelines.vision.encoders import shared_encoder
    from visrec_pipelines.vision.images import load_rgb

    shop = Shop(root, "demo", index=None, split=None)
    base = shop.settings("demo")
    # the very call ImageSearch makes, so the upload tests find this encoder in the process cache
    encoder = shared_encoder(base.search_encoder, base.encoder_weights, cache_dir=str(base.cache_dir))
    batch = np.stack([encoder.preprocessing.to_tensor(load_rgb(ds.root / p)[0]) for p in items["image_path"]])
    vectors = encoder.encode(batch).features
    tags = [[r.category, r.colour, r.pattern] for r in items.itertuples()]
    index = ExactIndex(items["item_id"], vectors, items["category"], tags, source="visrec_items_demo_test_1")
    index.save(base.warehouse_for().item_index_snapshot)
    from visrec_pipelines.vision.text_search import TextSearch  # words only: no sentence model to load

    TextSearch(items["item_id"], items["title"], tags).save(base.warehouse_for().text_search_index)
    pd.DataFrame({"item_id": items["item_id"], "encoder_id": encoder.encoder_id}).to_parquet(
        base.warehouse_for().table_path("image_embeddings"))
    shop.index = index
    shop.split = make_split(typed_events(ds.read_events()), items["item_id"], min_positives=2)
    shop.register("demo", "bpr")
    return shop


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
