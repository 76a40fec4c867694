"""Every setting visrec reads from the environment, in one place (pydantic-settings).

Local by default, production by configuration: nothing else in the package reads an environment
variable. The CLI builds one ``Settings()`` from the environment; tests build their own with
explicit fields (``Settings(root=tmp_path, dataset="shop")``) instead of patching the environment.

Locations (``VISREC_`` prefix unless named otherwise):
  ROOT (default: current directory), ASSETS (<root>/assets: dataset folders), WAREHOUSE
  (<root>/.visrec/warehouse: asset outputs, see ``warehouse.Warehouse``), DATASET (demo),
  DAGSTER_HOME (<root>/.dagster_home for ``visrec run``), MLFLOW_TRACKING_URI (sqlite under
  <root>/mlflow), MILVUS_URI / MILVUS_TOKEN (a milvus-lite file per dataset in the warehouse),
  CACHE (~/.cache/visrec: exported encoder graphs).
Models: ENCODER, ENCODER_WEIGHTS, DETECTOR_WEIGHTS, DETECTOR_CLASSES.
Automation: SENSOR_INTERVAL, AUTOMATION (off: sensors and schedule created stopped), EXECUTOR
  (in_process | multiprocess | celery), MAX_CONCURRENT; for celery CELERY_BROKER (default: the local
  RabbitMQ), CELERY_BACKEND (rpc://) and CELERY_QUEUE (dagster), which the workers must match.
Serving: API_KEY, SERVING_POLL_S, INDEX_SOURCE (snapshot | milvus), MAX_UPLOAD_BYTES,
  MAX_UPLOAD_PIXELS, SERVING_ENCODER (default: ENCODER; "none" disables search by image).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .vision import DEFAULT_ENCODER

DEFAULT_DATASET = "demo"


def _env(name: str):
    """A field read from an environment variable without the VISREC_ prefix."""
    return AliasChoices(name.lower(), name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VISREC_", frozen=True, extra="ignore",
                                      populate_by_name=True)

    # --- where things live ---------------------------------------------------------------------
    root: Path = Field(default_factory=Path.cwd)
    assets: Path | None = None
    warehouse: Path | None = None
    dataset: str = DEFAULT_DATASET
    dagster_home: Path | None = Field(None, validation_alias=_env("DAGSTER_HOME"))
    mlflow_tracking_uri: str | None = Field(None, validation_alias=_env("MLFLOW_TRACKING_URI"))
    milvus_uri: str | None = Field(None, validation_alias=_env("MILVUS_URI"))
    milvus_token: str = Field("", validation_alias=_env("MILVUS_TOKEN"))
    cache: Path | None = None

    # --- models --------------------------------------------------------------------------------
    encoder: str = DEFAULT_ENCODER
    encoder_weights: str | None = None
    detector_weights: str | None = None
    detector_classes: str | None = None

    # --- automation ----------------------------------------------------------------------------
    sensor_interval: int = Field(30, ge=1)
    automation: bool = True
    executor: Literal["in_process", "multiprocess", "celery"] = "in_process"
    max_concurrent: int = Field(0, ge=0)       # multiprocess: steps at once (0 = one per core)
    celery_broker: str = "pyamqp://guest:guest@127.0.0.1:5672//"   # celery: where steps are queued
    celery_backend: str = "rpc://"             # celery: how step events come back to the run
    celery_queue: str = Field("dagster", pattern=r"^[A-Za-z0-9_.-]+$")  # workers take steps from it (-Q)

    # --- serving -------------------------------------------------------------------------------
    api_key: str | None = None                 # when set, write endpoints need it in X-API-Key
    serving_poll_s: float = Field(10.0, gt=0)  # seconds between checks for a new champion/index
    index_source: Literal["snapshot", "milvus"] = "snapshot"
    max_upload_bytes: int = Field(10 * 2**20, gt=0)
    max_upload_pixels: int = Field(25_000_000, gt=0)
    serving_encoder: str | None = None
    max_json_bytes: int = 1 * 2**20
    max_events_per_request: int = 1000
    # Precomputed nearest neighbours per item make /similar a table lookup; computing them costs
    # ~4 s per 10k items (1280-d, growing with n^2) at every index swap, in the background, and
    # n x neighbours x 8 bytes of memory, so above this size /similar scans the matrix instead.
    neighbour_table_max_items: int = 30_000
    neighbours: int = 400                      # per item, within a 64 MB table (fewer below)
    # above this many items a factorised champion's best items come from an inverted-file index
    # (faiss IVF, its probes tuned to 95% recall of the exact top 200 at load), not a full scan
    ann_min_items: int = 30_000
    history_for_reasons: int = 50              # most recent history items searched for "looks like ..."
    user_cache_size: int = 50_000              # users whose best items stay cached until the next swap (~6 KB each)
    # known users' best items (with the look-alikes, and a two-stage champion's reasons, of the first
    # page) are computed at load, in batches, the most active users first, for at most this many
    # seconds (0: none; the rest are computed on their first request: ~10 ms for two_stage at 10k
    # items, ~0.7 ms for BPR at 100k, against ~0.05 ms once computed)
    serving_prefill_seconds: float = 30.0
    # a champion that scores per user keeps each user's whole score row for tag filters while
    # every known user's row fits in this many MB (else a filter the best 200 cannot answer rescores),
    # and the prefilled users' candidate pairs for their reasons within as many again
    user_scores_budget_mb: int = 512

    # --- derived locations ---------------------------------------------------------------------
    @property
    def root_dir(self) -> Path:
        return Path(self.root).resolve()

    @property
    def assets_dir(self) -> Path:
        return Path(self.assets or self.root_dir / "assets").resolve()

    @property
    def warehouse_dir(self) -> Path:
        return Path(self.warehouse or self.root_dir / ".visrec" / "warehouse").resolve()

    @property
    def dagster_home_dir(self) -> Path:
        return Path(self.dagster_home or self.root_dir / ".dagster_home").resolve()

    @property
    def mlflow_dir(self) -> Path:
        return self.root_dir / "mlflow"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache or Path.home() / ".cache" / "visrec")

    @property
    def search_encoder(self) -> str:
        """The encoder serving uses for search by image ("none": disabled)."""
        return self.serving_encoder or self.encoder

    def as_environment(self) -> dict[str, str | None]:
        """Every setting as the environment variable it is read from (None: unset), so that
        ``Settings()`` in another process reads these same settings."""
        out = {}
        for name, field in type(self).model_fields.items():
            alias = field.validation_alias
            key = alias.choices[-1] if isinstance(alias, AliasChoices) else f"VISREC_{name.upper()}"
            value = getattr(self, name)
            out[key] = None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        return out

    def with_dataset(self, name: str | None) -> Settings:
        return self if not name or name == self.dataset else self.replace(dataset=name)

    def replace(self, **changes) -> Settings:
        """A copy with ``changes``, validated like the original (``model_copy`` would not check)."""
        return type(self)(**{**self.model_dump(), **changes})

    def dataset_folder(self, name: str | None = None):
        """The ``data.contract.Dataset`` of ``name`` (default: this settings' dataset)."""
        from .data.contract import Dataset

        return Dataset(self.assets_dir / (name or self.dataset))

    def warehouse_for(self, name: str | None = None):
        """The ``warehouse.Warehouse`` of ``name`` (default: this settings' dataset)."""
        from .warehouse import Warehouse

        return Warehouse(self.warehouse_dir, name or self.dataset)

    def registry(self, name: str | None = None):
        """The MLflow registry of ``name``'s rankers (``registry.Registry``)."""
        from .registry import Registry

        return Registry(self.tracking_uri, name or self.dataset, self.root_dir)
