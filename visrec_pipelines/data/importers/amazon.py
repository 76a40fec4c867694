"""The Amazon Reviews layout (the 2014/2018 public dumps): reviews as JSON lines (``reviewerID``,
``asin``, ``overall``, ``unixReviewTime``, optionally ``reviewTime``, ``summary``, ``reviewText``),
a metadata file (JSON lines with ``asin``, ``title``, ``categories`` as a list of lists or
``category`` as a list, ``description``, ``brand``, ...; older dumps hold Python dict literals),
plain or gzipped, and a folder of images named ``<asin>.jpg``.

Reviews become ``rating`` events (value = overall, timestamp = unixReviewTime, or reviewTime where
that is missing); metadata becomes items, categories pipe-joined into one multi-label column.
Every other field is kept (lists and dicts as JSON text).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...times import contract_timestamps
from ..contract import Dataset
from ..tables import ROW_ERROR, DatasetError
from .common import ImageCopies, finish_import, fresh_dataset, table_notes
from .records import nested_as_json, read_records

REVIEW_COLUMNS = {"reviewerID": "user_id", "asin": "item_id", "overall": "value"}
REVIEW_TIME_FORMAT = "%m %d, %Y"          # how the dumps write reviewTime: "09 13, 2009"
CATEGORY_FIELDS = ("categories", "category")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
LABEL_SEPARATOR = "|"


def import_amazon(reviews: Path, meta: Path, images_dir: Path, out_dir: Path, progress: bool = False) -> Dataset:
    reviews_frame, review_notes = read_records(reviews)
    meta_frame, meta_notes = read_records(meta)
    _require(reviews_frame, reviews, ("reviewerID", "asin", "overall"))
    if "unixReviewTime" not in reviews_frame and "reviewTime" not in reviews_frame:
        raise DatasetError(f"{reviews}: the reviews have neither unixReviewTime nor reviewTime; "
                           f"fields: {list(reviews_frame.columns)}")
    _require(meta_frame, meta, ("asin",))

    dataset = fresh_dataset(out_dir, (reviews, meta, images_dir))
    images = ImageCopies(dataset, Path(images_dir))
    image_paths = [images.take(asin, _image_name(Path(images_dir), asin)) for asin in meta_frame["asin"]]
    images.copy(progress)

    items = nested_as_json(meta_frame.drop(columns=[c for c in CATEGORY_FIELDS if c in meta_frame]))
    items = items.rename(columns={"asin": "item_id"}).assign(
        image_path=image_paths, categories=_categories(meta_frame).to_numpy())
    if "description" in meta_frame:
        items["description"] = meta_frame["description"].map(_text, na_action="ignore").to_numpy()
    events = nested_as_json(reviews_frame.drop(columns=["unixReviewTime"], errors="ignore"))
    events = events.rename(columns=REVIEW_COLUMNS).assign(event_type="rating", timestamp=_timestamps(reviews_frame))

    notes = table_notes("reviews", review_notes) + table_notes("metadata", meta_notes)
    counts = {"source_reviews": len(reviews_frame), "events": len(events),
              "source_products": len(meta_frame), "items": len(items), **images.counts(),
              "unreadable_review_lines": _unreadable(reviews_frame),
              "unreadable_product_lines": _unreadable(meta_frame)}
    manifest = {"source": "amazon", "source_path": str(Path(reviews).resolve()),
                "sources": {"reviews": str(Path(reviews).resolve()), "meta": str(Path(meta).resolve()),
                            "images": str(Path(images_dir).resolve())},
                "counts": counts, "items_without_image": images.missing}
    return finish_import(dataset, items, events, None, manifest, notes)


def _require(frame: pd.DataFrame, path: Path, fields: tuple[str, ...]) -> None:
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: no record has the field(s) {missing}; fields found: "
                           f"{[c for c in frame.columns if c != ROW_ERROR][:30]}")


def _timestamps(reviews: pd.DataFrame) -> list:
    """unixReviewTime (unix seconds, as the dumps declare); reviewTime only where it is missing."""
    empty = pd.Series([None] * len(reviews), dtype=object)
    stamps = contract_timestamps(reviews.get("unixReviewTime", empty), "unix_s")
    if "reviewTime" in reviews:
        fallback = contract_timestamps(reviews["reviewTime"], REVIEW_TIME_FORMAT)
        stamps = stamps.where(stamps.notna(), fallback)
    return stamps.tolist()


def _categories(meta: pd.DataFrame) -> pd.Series:
    """``categories`` (list of lists) or ``category`` (list) → ``a|b|c``, each label once, in order."""
    joined = pd.Series([None] * len(meta), dtype=object, index=meta.index)
    for field in reversed(CATEGORY_FIELDS):     # "categories" wins where a record has both
        if field in meta:
            labels = meta[field].map(_labels)
            joined = labels.where(labels.notna(), joined)
    return joined


def _labels(value) -> str | None:
    flat: list[str] = []

    def walk(node) -> None:
        if isinstance(node, (list, tuple)):
            for child in node:
                walk(child)
        elif not _missing(node) and str(node).strip():
            flat.append(str(node).strip().replace(LABEL_SEPARATOR, "/"))
    walk(value)
    return LABEL_SEPARATOR.join(dict.fromkeys(flat)) or None


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)    # None, or NaN for an absent field


def _text(value) -> str:
    """A description given as a list of paragraphs becomes one text."""
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _image_name(images_dir: Path, asin) -> str | None:
    if asin is None or not isinstance(asin, str):
        return None
    found = next((f"{asin}{s}" for s in IMAGE_SUFFIXES if (images_dir / f"{asin}{s}").is_file()), None)
    return found or f"{asin}.jpg"


def _unreadable(frame: pd.DataFrame) -> int:
    return int(frame[ROW_ERROR].notna().sum()) if ROW_ERROR in frame else 0
