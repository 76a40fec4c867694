"""How the server is configured: arguments of ``visrec serve`` over environment variables over defaults.

VISREC_API_KEY            when set, write endpoints (POST /events, POST /admin/reload) need it in X-API-Key
VISREC_SERVING_POLL_S     seconds between checks for a new champion or index (default 10)
VISREC_INDEX_SOURCE       snapshot (default: the .npz the item_index asset writes) or milvus (export
                          the collection the Milvus alias points at; meant for a Milvus server URI)
VISREC_MAX_UPLOAD_BYTES   largest accepted image upload (default 10 MB)
VISREC_MAX_UPLOAD_PIXELS  largest accepted image, in pixels, read from its header (default 25 M)
VISREC_SERVING_ENCODER    image encoder for search by image; "none" disables it (default: VISREC_ENCODER
                          or efficientnet-lite0)
"""
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings as project_settings

INDEX_SOURCES = ("snapshot", "milvus")


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass
class ServingSettings:
    dataset: str = field(default_factory=project_settings.dataset_name)
    assets_dir: Path = field(default_factory=project_settings.assets_dir)
    warehouse_dir: Path = field(default_factory=project_settings.warehouse_dir)
    api_key: str | None = field(default_factory=lambda: os.environ.get("VISREC_API_KEY") or None)
    poll_seconds: float = field(default_factory=lambda: _env_float("VISREC_SERVING_POLL_S", 10.0))
    index_source: str = field(default_factory=lambda: os.environ.get("VISREC_INDEX_SOURCE", "snapshot"))
    milvus_uri: str | None = field(default_factory=lambda: os.environ.get("MILVUS_URI") or None)
    max_upload_bytes: int = field(default_factory=lambda: _env_int("VISREC_MAX_UPLOAD_BYTES", 10 * 2**20))
    max_upload_pixels: int = field(default_factory=lambda: _env_int("VISREC_MAX_UPLOAD_PIXELS", 25_000_000))
    max_json_bytes: int = 1 * 2**20
    max_events_per_request: int = 1000
    encoder: str = field(default_factory=lambda: os.environ.get("VISREC_SERVING_ENCODER")
                         or os.environ.get("VISREC_ENCODER", "efficientnet-lite0"))
    encoder_weights: str | None = field(default_factory=lambda: os.environ.get("VISREC_ENCODER_WEIGHTS") or None)
    # Precomputed nearest neighbours per item make /similar a table lookup; computing them costs
    # ~4 s per 10k items (1280-d, growing with n^2) at every index swap, in the background, and
    # n x neighbours x 8 bytes of memory, so above this size /similar scans the matrix instead.
    neighbour_table_max_items: int = 30_000
    neighbours: int = 400                # per item, within a 64 MB table (fewer below)
    history_for_reasons: int = 50       # most recent history items searched for "looks like ..."
    user_cache_size: int = 20_000       # users whose best items stay cached until the next swap (~3 KB each)

    def __post_init__(self):
        self.assets_dir, self.warehouse_dir = Path(self.assets_dir), Path(self.warehouse_dir)
        if self.index_source not in INDEX_SOURCES:
            raise ValueError(f"index source must be one of {INDEX_SOURCES}, got {self.index_source!r}")
        if self.poll_seconds <= 0:
            raise ValueError("poll_seconds must be positive")

    @property
    def dataset_root(self) -> Path:
        return self.assets_dir / self.dataset

    @property
    def dataset_warehouse(self) -> Path:
        return self.warehouse_dir / self.dataset

    @property
    def snapshot_path(self) -> Path:
        """Written by the item_index asset beside the Milvus collection it built."""
        return self.dataset_warehouse / "item_index.npz"

    @property
    def serving_dir(self) -> Path:
        return self.dataset_warehouse / "serving"
