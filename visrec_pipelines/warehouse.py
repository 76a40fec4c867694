"""Every file the pipeline writes for one dataset, named in one place: ``<root>/<dataset>/...``.

Assets store their values here through the IO manager (tables as Parquet, other values as pickles);
serving, the CLI and the sensors read the same files by the same names.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ITEMS_ALIAS = "visrec_items"


class DamagedWarehouseFile(RuntimeError):
    """An asset's stored value cannot be read back; says which and how to rebuild it."""

    def __init__(self, path: Path, asset: str, problem: Exception):
        super().__init__(f"{path} cannot be read ({type(problem).__name__}: {str(problem)[:200]}); "
                         f"materialise {asset} again to rebuild it (e.g. visrec run)")
        self.path, self.asset = path, asset


@dataclass(frozen=True)
class Warehouse:
    root: Path
    dataset: str

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def dir(self) -> Path:
        return self.root / self.dataset

    # --- asset values (the IO manager's files) ---------------------------------------------------
    def asset_stem(self, key_path: Sequence[str] | str) -> Path:
        """Where an asset's value lives, without its suffix (.parquet for tables, .pkl otherwise)."""
        parts = [key_path] if isinstance(key_path, str) else list(key_path)
        return self.dir / "__".join(parts)

    def table_path(self, asset: str) -> Path:
        return self.asset_stem(asset).with_suffix(".parquet")

    def read_table(self, asset: str, columns: list[str] | None = None) -> pd.DataFrame | None:
        """An asset's last materialised table, or None if it has none yet; DamagedWarehouseFile if
        the file is there but unreadable (a torn write, a full disk, a hand edit)."""
        path = self.table_path(asset)
        if not path.is_file():
            return None
        try:
            return pd.read_parquet(path, columns=columns)
        except Exception as problem:          # pyarrow raises several types for a damaged file
            raise DamagedWarehouseFile(path, asset, problem) from problem

    # --- files assets keep besides their values -------------------------------------------------
    @property
    def embeddings_dir(self) -> Path:
        """The incremental embedding store (one sub-folder per encoder id)."""
        return self.dir / "embeddings"

    @property
    def image_checks(self) -> Path:
        """raw_images' cache of image checks by file signature."""
        return self.dir / "image_checks.json"

    @property
    def item_index_snapshot(self) -> Path:
        """The exact in-memory index serving searches, written by item_index beside its collection."""
        return self.dir / "item_index.npz"

    @property
    def similarity_space(self) -> Path:
        """How item vectors are made from image, label beliefs, text and colour (``vision.similarity``):
        serving maps an uploaded picture into the item index's space with it."""
        return self.dir / "similarity_space.npz"

    @property
    def text_search_index(self) -> Path:
        """Titles, descriptions, tags and text vectors that ``GET /search/text`` searches."""
        return self.dir / "text_search.npz"

    @property
    def fine_tuned_weights_dir(self) -> Path:
        """Fine-tuned encoder weights (one file per weights hash = per encoder id)."""
        return self.dir / "fine_tuned_encoders"

    def milvus_lite_file(self, purpose: str = "items") -> Path:
        """milvus-lite's database when no Milvus server is configured (one process per file)."""
        return self.dir / ("milvus.db" if purpose == "items" else f"milvus_{purpose}.db")

    def milvus_alias(self, purpose: str = "items") -> str:
        """One alias per dataset and purpose, so datasets can share a Milvus server. A Milvus server
        takes only letters, digits and underscores in names (milvus-lite takes more): other
        characters become "_" plus a digest of the dataset name, so names stay distinct."""
        base = ITEMS_ALIAS if purpose == "items" else f"visrec_{purpose}"
        name = self.dataset
        if not re.fullmatch(r"\w+", name, flags=re.ASCII):
            digest = hashlib.sha1(name.encode()).hexdigest()[:6]
            name = f"{re.sub(r'[^A-Za-z0-9_]', '_', name)}_{digest}"
        return f"{base}_{name}"

    @property
    def run_log(self) -> Path:
        """What libraries say during ``visrec run`` (the console keeps progress and the summary)."""
        return self.dir / "logs" / "run.log"

    def sensor_state(self, sensor: str) -> Path:
        return self.dir / "sensors" / sensor

    # --- serving ---------------------------------------------------------------------------------
    @property
    def serving_dir(self) -> Path:
        return self.dir / "serving"

    @property
    def last_good(self) -> Path:
        """The champion and index that last served here (a restart falls back to them)."""
        return self.serving_dir / "last_good.json"
