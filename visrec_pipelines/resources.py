"""Dagster resources: the dataset being worked on and where asset tables are stored."""
from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext

from . import settings
from .data.contract import Dataset
from .versioning import dataset_version


class DatasetResource(ConfigurableResource):
    """One dataset folder that follows the contract (``assets/<name>``)."""

    assets_dir: str
    name: str

    @property
    def dataset(self) -> Dataset:
        return Dataset(Path(self.assets_dir) / self.name)

    def version(self) -> dict:
        return {"dataset": self.name, **dataset_version(self.dataset.root)}


class WarehouseIOManager(ConfigurableIOManager):
    """Asset values under ``<base_dir>/<dataset>/``: DataFrames as Parquet (readable by serving and
    notebooks without Dagster), anything else (trained models) as a pickle."""

    base_dir: str
    dataset: str

    def _stem(self, context) -> Path:
        return Path(self.base_dir) / self.dataset / "__".join(context.asset_key.path)

    def handle_output(self, context: OutputContext, obj) -> None:
        stem = self._stem(context)
        stem.parent.mkdir(parents=True, exist_ok=True)
        path = stem.with_suffix(".parquet" if isinstance(obj, pd.DataFrame) else ".pkl")
        tmp = path.with_suffix(".tmp")
        if isinstance(obj, pd.DataFrame):
            obj.to_parquet(tmp, index=False)
        else:
            tmp.write_bytes(pickle.dumps(obj))
        tmp.replace(path)  # readers never see a half-written value
        context.add_output_metadata({"path": str(path)})

    def load_input(self, context: InputContext):
        stem = self._stem(context)
        if stem.with_suffix(".parquet").exists():
            return pd.read_parquet(stem.with_suffix(".parquet"))
        return pickle.loads(stem.with_suffix(".pkl").read_bytes())


def default_resources(dataset: str | None = None) -> dict:
    name = dataset or settings.dataset_name()
    return {
        "dataset": DatasetResource(assets_dir=str(settings.assets_dir()), name=name),
        "io_manager": WarehouseIOManager(base_dir=str(settings.warehouse_dir()), dataset=name),
    }
