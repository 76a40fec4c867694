"""The dataset contract every generator and importer produces.

A dataset is a folder (normally ``assets/<name>``) holding:

- ``items.csv``   item_id, image_path (relative to the folder, may be empty), title, optional labels
                  (category, genres, colour, pattern, ... any extra column is kept as a label)
- ``images/``     the item images
- ``events.csv``  user_id, item_id, event_type (view/click/add_to_cart/purchase/rating), value,
                  timestamp (ISO-8601, UTC)
- ``users.csv``   optional: user_id plus anything known about the user; when present, events of
                  users not listed are quarantined as unknown users
- ``dataset.json`` provenance: source, parameters, counts and what the import had to report

Tables are read as text (``data.tables``) so that nothing is lost before validation: a malformed
value or row is quarantined with a reason by the pipeline, never dropped or shifted by a parser.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..paths import inside
from .rules import EVENT_TYPES, RATING_RANGE  # noqa: F401  (re-exported: the contract's vocabulary)
from .tables import DatasetError, read_text_table, unreadable_rows

ITEM_COLUMNS = ("item_id", "image_path", "title")
EVENT_COLUMNS = ("user_id", "item_id", "event_type", "value", "timestamp")
# Feedback landed beside the dataset (``data.landing`` writes it): the event columns + event_id.
LANDED_COLUMNS = (*EVENT_COLUMNS, "event_id")
FILE_PATTERN = "events-*.csv"


@dataclass(frozen=True)
class Dataset:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def items_path(self) -> Path:
        return self.root / "items.csv"

    @property
    def events_path(self) -> Path:
        return self.root / "events.csv"

    @property
    def users_path(self) -> Path:
        return self.root / "users.csv"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def manifest_path(self) -> Path:
        return self.root / "dataset.json"

    @property
    def landing_events_dir(self) -> Path:
        """Feedback events posted to the serving API (see ``data.landing``). Beside the dataset
        folder, not in it: the folder is a DVC output, which ``dvc repro`` replaces wholesale."""
        return self.root.parent / f"{self.name}.landing" / "events"

    def exists(self) -> bool:
        return self.items_path.is_file() and self.events_path.is_file()

    def check(self) -> None:
        """Raise a clear error if the folder is not a dataset."""
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder {self.root} does not exist")
        for path in (self.items_path, self.events_path):
            if not path.is_file():
                raise DatasetError(f"dataset {self.name!r} has no {path.name} (expected at {path})")

    def read_items(self) -> pd.DataFrame:
        self.check()
        return read_table(self.items_path, ITEM_COLUMNS)

    def read_events(self) -> pd.DataFrame:
        """events.csv, then the events landed by the serving API (with their ``event_id``; that
        column is absent when nothing has landed, so the table is exactly events.csv then)."""
        self.check()
        events = read_table(self.events_path, EVENT_COLUMNS)
        landed = self.read_landed_events()
        if landed.empty:
            return events
        return pd.concat([events, landed], ignore_index=True)

    def read_landed_events(self) -> pd.DataFrame:
        """Every landed event as text, columns LANDED_COLUMNS, one row per event id (the first
        file in name order wins), in file order. A file that cannot be read as a table (no header,
        say) does not stop the others: its lines come back as rows with ``row_error`` set, which
        validation quarantines; an empty file holds no rows."""
        directory = self.landing_events_dir
        files = sorted(directory.glob(FILE_PATTERN)) if directory.is_dir() else []
        frames = [frame for frame in map(_read_landing_file, files) if len(frame)]
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in LANDED_COLUMNS})
        landed = pd.concat(frames, ignore_index=True)
        landed = landed.astype(object).where(landed.notna(), None)
        # an event without an id (a bulk loader's row) cannot be a retry of another: keep every one
        repeated = landed["event_id"].notna() & (landed["event_id"] != "") & landed.duplicated("event_id")
        return landed[~repeated].reset_index(drop=True)

    def read_users(self) -> pd.DataFrame | None:
        """users.csv, or None when the dataset has none; a users.csv that is not a table (empty,
        no user_id column) is a DatasetError: guessing would quarantine every event or none."""
        return read_table(self.users_path, ("user_id",)) if self.users_path.is_file() else None

    def image_file(self, image_path: str) -> Path:
        """The image's file; ``paths.OutsideFolder`` if the path leads outside the dataset folder
        (``..``, an absolute path or a symbolic link): items.csv is data, not a licence to read the disk."""
        return inside(self.root, image_path)

    def read_manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text()) if self.manifest_path.is_file() else {}

    def import_image_problems(self) -> dict[str, str]:
        """item id -> why the importer found no image for it (as recorded in dataset.json)."""
        problems = {}
        for entry in self.read_manifest().get("items_without_image", []):
            if isinstance(entry, dict) and entry.get("reason"):
                problems[str(entry["item_id"])] = f"import: {entry['reason']}"
        return problems

    def write_manifest(self, manifest: dict) -> None:
        self.manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_table(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """A contract table as text (empty cells None; malformed rows kept with ``row_error``);
    DatasetError naming the file and the fix if it lacks a required column."""
    return read_text_table(path, required).frame


def _read_landing_file(path: Path) -> pd.DataFrame:
    try:
        return read_table(path, LANDED_COLUMNS)
    except DatasetError as problem:
        return unreadable_rows(path, LANDED_COLUMNS, f"landing file {path.name} is not a table: {problem}")


def write_table(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
