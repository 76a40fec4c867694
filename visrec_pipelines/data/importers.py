"""Importers: turn outside data into the dataset contract. They never drop a row.

Validation is the pipeline's job (``behaviour_events``, ``raw_images``); an importer only renames,
copies and reports. Rows that look wrong are kept verbatim so the pipeline can quarantine them with
a reason and every source row stays accounted for.
"""
from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ..paths import OutsideFolder, inside
from .contract import EVENT_COLUMNS, Dataset, DatasetError, read_table, write_table
from .tables import read_text_table


def _fresh_dataset(out_dir: Path) -> Dataset:
    dataset = Dataset(Path(out_dir))
    if dataset.images_dir.exists():
        shutil.rmtree(dataset.images_dir)
    dataset.images_dir.mkdir(parents=True)
    return dataset


def unix_to_iso(value: str | None) -> str | None:
    """Unix seconds → ISO-8601 UTC; anything else is passed through untouched for validation."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return value
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def _copy_images(pairs: list[tuple[Path, Path]], progress: bool) -> None:
    for source, target in tqdm(pairs, desc="copying images", unit="img", disable=not progress):
        shutil.copyfile(source, target)


def import_movielens(source: Path, out_dir: Path, progress: bool = False) -> Dataset:
    """MovieLens ratings + movies + ``posters/{item_id}.jpg`` → the contract (ratings become events)."""
    source = Path(source)
    for name in ("ratings.csv", "movies.csv"):
        if not (source / name).is_file():
            raise DatasetError(f"{source} is not a MovieLens folder: {name} is missing")
    movies = read_table(source / "movies.csv", ("item_id", "title", "genres"))
    ratings = read_table(source / "ratings.csv", ("user_id", "item_id", "rating", "timestamp"))

    dataset = _fresh_dataset(out_dir)
    posters = source / "posters"
    copies, image_paths, missing = [], [], []
    for item_id in movies["item_id"]:
        poster = posters / f"{item_id}.jpg"
        if item_id is not None and poster.is_file():
            copies.append((poster, dataset.images_dir / poster.name))
            image_paths.append(f"images/{poster.name}")
        else:
            image_paths.append(None)
            missing.append(item_id)
    _copy_images(copies, progress)

    items = pd.DataFrame({"item_id": movies["item_id"], "image_path": image_paths,
                          "title": movies["title"], "genres": movies["genres"]})
    events = pd.DataFrame({
        "user_id": ratings["user_id"], "item_id": ratings["item_id"], "event_type": "rating",
        "value": ratings["rating"], "timestamp": ratings["timestamp"].map(unix_to_iso),
    })
    write_table(items, dataset.items_path)
    write_table(events, dataset.events_path)
    dataset.write_manifest({
        "source": "movielens", "source_path": str(source.resolve()),
        "counts": {"source_movies": len(movies), "source_ratings": len(ratings),
                   "items": len(items), "events": len(events), "images_copied": len(copies),
                   "items_without_image": len(missing)},
        "items_without_image": missing,
    })
    return dataset


def import_folder(items_csv: Path, events_csv: Path, images_dir: Path, out_dir: Path,
                  progress: bool = False) -> Dataset:
    """Generic importer: an items table (item_id, image_path or image, title, labels...), an events
    table in the contract's columns, and a folder of images that image paths are relative to.
    Tables may come in any delimiter and common encoding (``data.tables``); a row that cannot be
    read is kept and marked, so the pipeline quarantines it. Images are only taken from inside
    ``images_dir``: a path that leads out of it (``..``, absolute, a link) is refused with a reason."""
    items_table = read_text_table(Path(items_csv), ("item_id",), hint="rename the id column to item_id")
    items = items_table.frame
    image_column = "image_path" if "image_path" in items.columns else "image"
    if image_column not in items.columns:
        raise DatasetError(f"{items_csv}: needs an image_path (or image) column naming each item's "
                           f"picture relative to --images; it has {list(items.columns)}")
    events_table = read_text_table(Path(events_csv), EVENT_COLUMNS,
                                   hint=f"the events table needs the columns {list(EVENT_COLUMNS)}")
    events = events_table.frame

    dataset = _fresh_dataset(out_dir)
    copies, image_paths, missing = [], [], []
    for item_id, relative in zip(items["item_id"], items[image_column]):
        source, problem = safe_image_file(Path(images_dir), relative)
        if source is not None:
            target = dataset.images_dir / f"{len(copies):06d}{source.suffix.lower()}"
            copies.append((source, target))
            image_paths.append(f"images/{target.name}")
        else:
            image_paths.append(None)
            missing.append({"item_id": item_id, "image": relative, "reason": problem})
    _copy_images(copies, progress)

    items = items.drop(columns=[image_column]).assign(image_path=image_paths)
    if "title" not in items.columns:
        items["title"] = items["item_id"]
    ordered = ["item_id", "image_path", "title"]
    write_table(items[ordered + [c for c in items.columns if c not in ordered]], dataset.items_path)
    write_table(events[list(EVENT_COLUMNS) + [c for c in events.columns if c not in EVENT_COLUMNS]],
                dataset.events_path)
    notes = [f"items: {n}" for n in items_table.notes] + [f"events: {n}" for n in events_table.notes]
    dataset.write_manifest({
        "source": "folder", "source_path": str(Path(items_csv).resolve()),
        "counts": {"items": len(items), "events": len(events), "images_copied": len(copies),
                   "items_without_image": len(missing), "unreadable_item_rows": items_table.bad_rows,
                   "unreadable_event_rows": events_table.bad_rows},
        "items_without_image": missing, "notes": notes,
    })
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
