"""Dagster resources: the dataset being worked on and where asset tables are stored."""
from __future__ import annotations

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


class ParquetIOManager(ConfigurableIOManager):
    """DataFrames as Parquet under ``<base_dir>/<dataset>/<asset>.parquet``: one warehouse folder
    per dataset, readable by serving and notebooks without Dagster."""

    base_dir: str
    dataset: str

    def _path(self, context) -> Path:
        return Path(self.base_dir) / self.dataset / f"{'__'.join(context.asset_key.path)}.parquet"

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} must be a DataFrame, got {type(obj)}")
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        obj.to_parquet(tmp, index=False)
        tmp.replace(path)  # readers never see a half-written table
        context.add_output_metadata({"path": str(path)})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        return pd.read_parquet(self._path(context))


def default_resources(dataset: str | None = None) -> dict:
    name = dataset or settings.dataset_name()
    return {
        "dataset": DatasetResource(assets_dir=str(settings.assets_dir()), name=name),
        "io_manager": ParquetIOManager(base_dir=str(settings.warehouse_dir()), dataset=name),
    }
