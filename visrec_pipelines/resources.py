"""Dagster resources, built from one ``settings.Settings``: the dataset and its warehouse, the
MLflow registry, the image encoder, the optional detector and the Milvus index.

Assets, checks and sensors get every location through these (never from the environment), so a
test swaps resources (``build_definitions(Settings(root=tmp))``) instead of patching variables.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, ConfigurableResource, InputContext, OutputContext

from . import mapped_pickle
from .atomic import write_atomically
from .data.contract import Dataset
from .registry import Registry
from .settings import Settings
from .versioning import dataset_version
from .warehouse import DamagedWarehouseFile, Warehouse


@dataclass(frozen=True)
class DatasetView:
    """One dataset as an asset sees it: its folder (the contract) and its warehouse outputs."""
    name: str
    folder: Dataset
    warehouse: Warehouse

    def version(self) -> dict:
        return {"dataset": self.name, **dataset_version(self.folder.root)}

    def child_environment(self) -> dict[str, str]:
        """Where a child process (``visrec embed --shard``) finds this dataset (``Settings`` reads it)."""
        return {"VISREC_ASSETS": str(self.folder.root.parent), "VISREC_WAREHOUSE": str(self.warehouse.root),
                "VISREC_DATASET": self.name}


class DatasetsResource(ConfigurableResource):
    """Every dataset: folders under ``assets_dir`` (the contract), outputs under ``warehouse_dir``.
    Each run works on one, named by its partition key (``defs.partitions.DATASETS``)."""

    assets_dir: str
    warehouse_dir: str

    def named(self, name: str) -> DatasetView:
        return DatasetView(name, Dataset(Path(self.assets_dir) / name), Warehouse(self.warehouse_dir, name))

    def of(self, context) -> DatasetView:
        """The dataset of the run ``context`` belongs to (its partition)."""
        return self.named(context.partition_key)

    def available(self) -> list[str]:
        """Dataset folders under ``assets_dir`` (items.csv and events.csv present), by name."""
        root = Path(self.assets_dir)
        return sorted(p.name for p in root.iterdir() if Dataset(p).exists()) if root.is_dir() else []


class RegistryResource(ConfigurableResource):
    """The MLflow tracking store and model registry (a local sqlite store or a server URI)."""

    tracking_uri: str
    project_root: str | None = None

    def for_dataset(self, dataset: str) -> Registry:
        return Registry(self.tracking_uri, dataset, Path(self.project_root) if self.project_root else None)


class WarehouseIOManager(ConfigurableIOManager):
    """Asset values under ``<warehouse_dir>/<dataset>/`` (the dataset is the partition): DataFrames
    as Parquet (readable by serving and notebooks without Dagster), anything else as a pickle whose
    arrays are memory-mapped on load (``mapped_pickle``: a large split is not copied into every step)."""

    warehouse_dir: str

    def _stem(self, context):
        return Warehouse(self.warehouse_dir, context.asset_partition_key).asset_stem(context.asset_key.path)

    def handle_output(self, context: OutputContext, obj) -> None:
        stem = self._stem(context)
        path = stem.with_suffix(".parquet" if isinstance(obj, pd.DataFrame) else ".pkl")
        if isinstance(obj, pd.DataFrame):
            write_atomically(path, lambda f: obj.to_parquet(f, index=False))
        else:
            write_atomically(path, lambda f: mapped_pickle.dump(obj, f))   # readers never see half a value
        context.add_output_metadata({"path": str(path)})

    def load_input(self, context: InputContext):
        stem = self._stem(context)
        path = stem.with_suffix(".parquet")
        path = path if path.exists() else stem.with_suffix(".pkl")
        try:
            return pd.read_parquet(path) if path.suffix == ".parquet" else mapped_pickle.load(path)
        except Exception as problem:     # a damaged value: say which and how to rebuild it
            raise DamagedWarehouseFile(path, context.asset_key.to_user_string(), problem) from problem


class EncoderResource(ConfigurableResource):
    """The image encoder: EfficientNet-Lite0 (ImageNet, offline) by default; torchvision backbones
    (resnet18/50, mobilenet_v3_*, efficientnet_b0) with a user-supplied weights file."""

    name: str
    weights_path: str | None = None
    runtime: str = "auto"
    cache_dir: str | None = None

    def get(self):
        from .vision.encoders import shared_encoder

        return shared_encoder(self.name, self.weights_path, self.runtime, self.cache_dir)

    def cli_args(self) -> list[str]:
        args = ["--encoder", self.name, "--runtime", self.runtime]
        return args + (["--weights", self.weights_path] if self.weights_path else [])

    def child_environment(self) -> dict[str, str]:
        return {"VISREC_CACHE": self.cache_dir} if self.cache_dir else {}


class DetectorResource(ConfigurableResource):
    """Optional object detector (torchvision architecture + a weights file + its class names);
    without a weights file there is no detector and no detector tags."""

    weights_path: str | None = None
    class_names_path: str | None = None
    architecture: str = "fasterrcnn_mobilenet_v3_large_320_fpn"

    def get(self):
        from .vision.detection import load_detector

        return load_detector(self.weights_path, self.class_names_path, self.architecture)


class VectorIndexResource(ConfigurableResource):
    """Milvus: a milvus-lite file in the dataset's warehouse by default, a server by URI."""

    uri: str | None = None
    token: str = ""

    def open(self, warehouse: Warehouse, purpose: str = "items"):
        from .index.milvus_index import open_item_index

        return open_item_index(warehouse, self.uri, self.token, purpose)

    def lite_file(self, warehouse: Warehouse, purpose: str = "items") -> Path | None:
        """The milvus-lite database this resource uses, or None for a Milvus server."""
        return None if self.uri else warehouse.milvus_lite_file(purpose)


def default_resources(settings: Settings) -> dict:
    """Every resource the assets use (for every dataset: a run's partition names its dataset)."""
    return {
        "datasets": DatasetsResource(assets_dir=str(settings.assets_dir), warehouse_dir=str(settings.warehouse_dir)),
        "registry": RegistryResource(tracking_uri=settings.tracking_uri, project_root=str(settings.root_dir)),
        "io_manager": WarehouseIOManager(warehouse_dir=str(settings.warehouse_dir)),
        "encoder": EncoderResource(name=settings.encoder, weights_path=settings.encoder_weights,
                                   cache_dir=str(settings.cache_dir)),
        "detector": DetectorResource(weights_path=settings.detector_weights,
                                     class_names_path=settings.detector_classes),
        "vector_index": VectorIndexResource(uri=settings.milvus_uri, token=settings.milvus_token),
    }
