"""A shop's own files: an items table, an events table, optionally a users table (CSV in any
common delimiter/encoding, or Parquet: ``data.tables``) and a folder of images.

Columns are mapped to the contract's (``mapping``); every other column is kept (labels, free-text
descriptions, prices) for later assets. Events without an ``event_type`` column take the declared
default; without ``value``, an empty value. Time stamps are written in the contract's ISO-8601 UTC
(``times``); a value that cannot be parsed is written as it came, for the pipeline to quarantine.
"""
from __future__ import annotations

from pathlib import Path

from ...times import contract_timestamps
from ..contract import EVENT_COLUMNS, Dataset
from ..tables import DatasetError, read_text_table
from .common import ImageCopies, finish_import, fresh_dataset, table_notes
from .mapping import ColumnMapping


def import_folder(items_csv: Path, events_csv: Path, images_dir: Path, out_dir: Path,
                  users_csv: Path | None = None, mapping: ColumnMapping | None = None,
                  progress: bool = False) -> Dataset:
    """Images are only taken from inside ``images_dir``: a path that leads out of it (``..``,
    absolute, a link) is refused with a reason."""
    mapping = mapping or ColumnMapping.build()
    items_table = read_text_table(Path(items_csv))
    items = mapping.apply("items", items_table.frame, items_csv)
    if "item_id" not in items:
        raise DatasetError(f"{items_csv}: required column(s) ['item_id'] missing; it has {list(items.columns)}. "
                           f"Map the id column, e.g. --map item_id=article_id")
    image_column = "image_path" if "image_path" in items.columns else "image"
    if image_column not in items.columns:
        raise DatasetError(f"{items_csv}: needs an image_path (or image) column naming each item's "
                           f"picture relative to --images; it has {list(items.columns)}")
    events_table = read_text_table(Path(events_csv))
    events = _contract_events(mapping.apply("events", events_table.frame, events_csv), events_csv, mapping)
    users_table = read_text_table(Path(users_csv)) if users_csv else None
    users = None
    if users_table is not None:
        users = mapping.apply("users", users_table.frame, users_csv)
        if "user_id" not in users:
            raise DatasetError(f"{users_csv}: required column(s) ['user_id'] missing; it has "
                               f"{list(users.columns)}. Map the id column, e.g. --map user_id=customer_id")

    dataset = fresh_dataset(out_dir, (items_csv, events_csv, images_dir, users_csv))
    images = ImageCopies(dataset, Path(images_dir), numbered=True)
    image_paths = [images.take(item_id, relative) for item_id, relative in zip(items["item_id"], items[image_column])]
    images.copy(progress)
    items = items.drop(columns=[image_column]).assign(image_path=image_paths)
    if "title" not in items.columns:
        items["title"] = items["item_id"]

    notes = table_notes("items", items_table.notes) + table_notes("events", events_table.notes)
    if users_table is not None:
        notes += table_notes("users", users_table.notes)
    counts = {"source_items": len(items_table.frame), "items": len(items),
              "source_events": len(events_table.frame), "events": len(events),
              **images.counts(), "unreadable_item_rows": items_table.bad_rows,
              "unreadable_event_rows": events_table.bad_rows}
    if users_table is not None:
        counts.update(source_users=len(users_table.frame), users=len(users),
                      unreadable_user_rows=users_table.bad_rows)
    manifest = {"source": "folder", "source_path": str(Path(items_csv).resolve()),
                "sources": {k: str(Path(v).resolve()) for k, v in
                            {"items": items_csv, "events": events_csv, "users": users_csv,
                             "images": images_dir}.items() if v},
                "mapping": mapping.describe(), "counts": counts, "items_without_image": images.missing}
    return finish_import(dataset, items, events, users, manifest, notes)


def _contract_events(events, path: Path, mapping: ColumnMapping):
    """Declared defaults for absent columns, time stamps in contract form."""
    defaults = {"value": None} | ({"event_type": mapping.event_type} if mapping.event_type else {})
    missing = [c for c in EVENT_COLUMNS if c not in events.columns and c not in defaults]
    if missing:
        fix = " (or declare one type for all: --event-type purchase)" if "event_type" in missing else ""
        raise DatasetError(f"{path}: required column(s) {missing} missing; it has {list(events.columns)}; "
                           f"the events table needs the columns {list(EVENT_COLUMNS)}: map yours, e.g. "
                           f"--map user_id=customer_id{fix}")
    events = events.assign(**{c: v for c, v in defaults.items() if c not in events.columns})
    return events.assign(timestamp=contract_timestamps(events["timestamp"], mapping.timestamp_format).to_numpy())
