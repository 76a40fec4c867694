"""Dagster resources: the dataset being worked on and where asset tables are stored."""
from __future__ import annotations

import os
import pickle
from functools import lru_cache
from pathlib import Path
from typing import Optional

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


def asset_stem(base_dir, dataset: str, key_path) -> Path:
    """Where an asset's value lives, without its suffix (.parquet for tables, .pkl otherwise)."""
    return Path(base_dir) / dataset / "__".join(key_path)


class WarehouseIOManager(ConfigurableIOManager):
    """Asset values under ``<base_dir>/<dataset>/``: DataFrames as Parquet (readable by serving and
    notebooks without Dagster), anything else (trained models) as a pickle."""

    base_dir: str
    dataset: str

    def _stem(self, context) -> Path:
        return asset_stem(self.base_dir, self.dataset, context.asset_key.path)

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
        "encoder": EncoderResource(name=os.environ.get("VISREC_ENCODER", "efficientnet-lite0"),
                                   weights_path=os.environ.get("VISREC_ENCODER_WEIGHTS") or None),
        "detector": DetectorResource(weights_path=os.environ.get("VISREC_DETECTOR_WEIGHTS") or None,
                                     class_names_path=os.environ.get("VISREC_DETECTOR_CLASSES") or None),
        "vector_index": VectorIndexResource(uri=os.environ.get("MILVUS_URI") or None),
    }


@lru_cache(maxsize=4)
def _encoder(name: str, weights_path: str | None, runtime: str):
    from .vision.encoders import build_encoder

    return build_encoder(name, weights_path=weights_path, runtime=runtime)


class EncoderResource(ConfigurableResource):
    """The image encoder: EfficientNet-Lite0 (ImageNet, offline) by default; torchvision backbones
    (resnet18/50, mobilenet_v3_*, efficientnet_b0) with a user-supplied weights file."""

    name: str = "efficientnet-lite0"
    weights_path: Optional[str] = None
    runtime: str = "auto"

    def get(self):
        return _encoder(self.name, self.weights_path, self.runtime)

    def cli_args(self) -> list[str]:
        args = ["--encoder", self.name, "--runtime", self.runtime]
        return args + (["--weights", self.weights_path] if self.weights_path else [])


class DetectorResource(ConfigurableResource):
    """Optional object detector (torchvision architecture + a weights file + its class names);
    without a weights file there is no detector and no detector tags."""

    weights_path: Optional[str] = None
    class_names_path: Optional[str] = None
    architecture: str = "fasterrcnn_mobilenet_v3_large_320_fpn"

    def get(self):
        from .vision.detection import load_detector

        return load_detector(self.weights_path, self.class_names_path, self.architecture)


class VectorIndexResource(ConfigurableResource):
    """Milvus: a milvus-lite file in the warehouse by default, a server by URI (MILVUS_URI) in
    production; the token comes from MILVUS_TOKEN."""

    uri: Optional[str] = None
    alias: str = "visrec_items"

    def open(self, dataset: str, purpose: str = "items"):
        """``purpose`` "items": image vectors; "champion": the champion ranker's item vectors. With
        milvus-lite each purpose gets its own file (one process may hold a file at a time, and
        re-indexing the catalogue must not wait for a champion publication, nor the reverse)."""
        from .index.milvus_index import MilvusItemIndex

        suffix = "" if purpose == "items" else f"_{purpose}"
        uri = self.uri or str(settings.warehouse_dir() / dataset / f"milvus{suffix}.db")
        alias = self.alias if purpose == "items" else f"visrec_{purpose}"
        return MilvusItemIndex(uri=uri, alias=f"{alias}_{dataset}")  # one alias per dataset
