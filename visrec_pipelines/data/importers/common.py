"""What every importer shares: a fresh output folder, images taken only from inside their folder,
tables as text in contract order, and the finish (the import report and dataset.json)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ...paths import OutsideFolder, inside
from ..contract import EVENT_COLUMNS, ITEM_COLUMNS, Dataset, DatasetError, write_table
from ..import_report import import_report

# an earlier import's users.csv (say) must not outlive a new import that has none
CONTRACT_FILES = ("items.csv", "events.csv", "users.csv", "dataset.json")


def fresh_dataset(out_dir: Path, sources: tuple[Path, ...] = ()) -> Dataset:
    """The output folder, emptied of an earlier import; refused if it holds one of the sources
    (emptying it would delete them)."""
    dataset = Dataset(Path(out_dir))
    out = dataset.root.resolve()
    for source in sources:
        if source is not None and (Path(source).resolve() == out or out in Path(source).resolve().parents):
            raise DatasetError(f"the output folder {out} holds the source {source}: import under another name")
    dataset.root.mkdir(parents=True, exist_ok=True)
    for name in CONTRACT_FILES:
        (dataset.root / name).unlink(missing_ok=True)
    if dataset.images_dir.exists():
        shutil.rmtree(dataset.images_dir)
    dataset.images_dir.mkdir()
    return dataset


def safe_image_file(images_dir: Path, relative) -> tuple[Path | None, str | None]:
    """(the image file, None), or (None, why not): it must be a file inside ``images_dir``."""
    if relative is None or not str(relative).strip():
        return None, "no image given"
    try:
        path = inside(images_dir, relative)
    except OutsideFolder:
        return None, f"image path {str(relative)[:200]!r} leads outside the images folder"
    if not path.is_file():
        return None, f"no image file at {str(relative)[:200]!r}"
    return path, None


class ImageCopies:
    """Collects each item's image (only from inside ``source_dir``) and why an item has none."""

    def __init__(self, dataset: Dataset, source_dir: Path, numbered: bool = False):
        self.dataset, self.source_dir, self.numbered = dataset, Path(source_dir), numbered
        self.pairs: list[tuple[Path, Path]] = []
        self.missing: list[dict] = []

    def take(self, item_id, relative) -> str | None:
        """The contract image_path for the item's image at ``relative``, or None (reason kept).
        The copy keeps its path under the source folder (already checked to be inside it), or
        gets a running number when ``numbered`` (a shop's image names may collide or be odd)."""
        source, problem = safe_image_file(self.source_dir, relative)
        if source is None:
            self.missing.append({"item_id": item_id, "image": relative, "reason": problem})
            return None
        if self.numbered:
            target = f"{len(self.pairs):06d}{source.suffix.lower()}"
        else:
            target = source.relative_to(self.source_dir.resolve()).as_posix()
        self.pairs.append((source, self.dataset.images_dir / target))
        return f"images/{target}"

    def copy(self, progress: bool = False) -> None:
        for parent in {target.parent for _, target in self.pairs}:
            parent.mkdir(parents=True, exist_ok=True)
        for source, target in tqdm(self.pairs, desc="copying images", unit="img", disable=not progress):
            shutil.copyfile(source, target)

    def counts(self) -> dict:
        return {"images_copied": len(self.pairs), "items_without_image": len(self.missing)}


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text or None: what the pipeline will read back from the CSV."""
    out = {}
    for name, column in frame.items():
        if column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
            out[name] = column
        else:
            out[name] = column.map(lambda v: v if v is None or isinstance(v, str) else str(v),
                                   na_action="ignore").astype(object)
        out[name] = out[name].where(out[name].notna(), None)
    return pd.DataFrame(out, index=frame.index)


def in_contract_order(frame: pd.DataFrame, first: tuple[str, ...]) -> pd.DataFrame:
    """The contract's columns first (added empty when absent), then every other column as it came."""
    frame = frame.reset_index(drop=True)
    for name in first:
        if name not in frame:
            frame[name] = None
    return frame[list(first) + [c for c in frame.columns if c not in first]]


def finish_import(dataset: Dataset, items: pd.DataFrame, events: pd.DataFrame,
                  users: pd.DataFrame | None, manifest: dict, notes: list[str]) -> Dataset:
    """Write the tables, then dataset.json with the counts, notes and the import report (what the
    pipeline will set aside, computed from the tables as written)."""
    items = as_text(in_contract_order(items, ITEM_COLUMNS))
    events = as_text(in_contract_order(events, EVENT_COLUMNS))
    write_table(items, dataset.items_path)
    write_table(events, dataset.events_path)
    if users is not None:
        users = as_text(in_contract_order(users, ("user_id",)))
        write_table(users, dataset.users_path)
    dataset.write_manifest({**manifest, "notes": notes,
                            "import_report": import_report(items, events, users, notes)})
    return dataset


def table_notes(label: str, notes: list[str]) -> list[str]:
    return [f"{label}: {note}" for note in notes]
