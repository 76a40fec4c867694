"""Which columns of a catalogue are labels a head can learn, found from the data alone.

A label column holds a few values that many items share (a category, a colour, a style), or
pipe-separated multi-labels (genres). Not labels: ids and names that nearly every item has to itself,
free text (descriptions), and codes that only repeat another column (``product_type_no`` next to
``product_type_name``): of two columns that split the items the same way the readable one is kept.
There is no cap on the number of labels: a catalogue with 200 product types gets a head for them.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

MULTI_SEPARATOR = "|"
IGNORED_LABELS = {"", "(no genres listed)"}
RESERVED_COLUMNS = {"item_id", "image_path", "title", "added_at", "width", "height", "sha256"}
MIN_COVERAGE = 0.5       # share of a column's filled rows whose label is shared by min_support items
FREE_TEXT_WORDS = 6      # values this long on average are descriptions, not labels
SAME_SPLIT = 0.85        # B recovers A's value for this share of items: A only repeats B
BASIC_COLOURS = ("black", "white", "grey", "gray", "red", "blue", "green", "yellow", "orange", "pink",
                 "purple", "brown", "beige", "navy", "turquoise", "khaki", "lilac", "silver", "gold",
                 "cream", "burgundy", "teal", "violet", "mint", "coral", "mole", "off white", "denim")


@dataclass(frozen=True)
class LabelGroup:
    column: str
    multi_label: bool
    labels: tuple[str, ...]


def label_lists(values: pd.Series, multi_label: bool) -> list[list[str]]:
    """Each row's labels (a multi-label cell is split on ``|``; empty and ignored labels dropped)."""
    out = []
    for value in values:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out.append([])
            continue
        parts = str(value).split(MULTI_SEPARATOR) if multi_label else [str(value)]
        out.append([p for p in parts if p not in IGNORED_LABELS])
    return out


def find_label_groups(items: pd.DataFrame, max_labels: int | None = None,
                      min_support: int = 5) -> list[LabelGroup]:
    """Label columns of ``items`` with their labels (those on at least ``min_support`` items)."""
    candidates = {}
    for column in items.columns:
        if column in RESERVED_COLUMNS:
            continue
        values = items[column].dropna().astype(str)
        if values.empty or values.str.split().str.len().mean() > FREE_TEXT_WORDS or _measurement(values):
            continue
        multi = bool(values.str.contains(MULTI_SEPARATOR, regex=False).any())
        exploded = values.str.split(MULTI_SEPARATOR).explode() if multi else values
        counts = exploded[~exploded.isin(IGNORED_LABELS)].value_counts()
        supported = counts[counts >= min_support]
        covered = exploded.isin(supported.index).groupby(level=0).any().mean() if multi else \
            counts[supported.index].sum() / len(values)
        if len(supported) >= 2 and covered >= MIN_COVERAGE and \
                (max_labels is None or len(supported) <= max_labels):
            candidates[column] = LabelGroup(column, multi, tuple(sorted(supported.index)))
    repeats = {a for a in candidates for b in candidates
               if a != b and _only_repeats(items, a, b) and _readability(items[b]) > _readability(items[a])}
    return [group for column, group in candidates.items() if column not in repeats]


def _measurement(values: pd.Series) -> bool:
    """Decimal numbers (prices, weights) are quantities, not labels; whole numbers may be codes or sizes."""
    numbers = pd.to_numeric(values, errors="coerce")
    return bool(numbers.notna().all() and (numbers % 1 != 0).any())


def _only_repeats(items: pd.DataFrame, a: str, b: str) -> bool:
    """Column a splits the items exactly as b does (a -> b always, b -> a almost always)."""
    both = items[[a, b]].dropna().astype(str)
    if both.empty:
        return False
    return _recovered(both, a, b) == 1.0 and _recovered(both, b, a) >= SAME_SPLIT


def _recovered(frame: pd.DataFrame, source: str, target: str) -> float:
    """Share of rows whose target value is the most common one among rows with their source value."""
    most_common = frame.groupby(source)[target].agg(lambda s: s.value_counts().iloc[0])
    return float(most_common.sum() / len(frame))


def _readability(values: pd.Series) -> tuple[float, float]:
    text = values.dropna().astype(str)
    return float(text.str.contains("[A-Za-z]").mean()), float(text.str.len().mean())


def targets(items: pd.DataFrame, group: LabelGroup) -> np.ndarray:
    """(n_items, n_labels) 0/1 matrix; rows without any known label are all zero."""
    index = {label: j for j, label in enumerate(group.labels)}
    y = np.zeros((len(items), len(group.labels)), dtype=np.float32)
    for i, labels in enumerate(label_lists(items[group.column], group.multi_label)):
        for label in labels:
            if label in index:
                y[i, index[label]] = 1.0
    return y


def held_out_mask(item_ids: pd.Series, fraction: float = 0.2, salt: str = "") -> np.ndarray:
    """A stable split by a hash of the item id: the same item is always on the same side, whatever
    the order or size of the catalogue (``salt`` draws an independent split, e.g. for validation)."""
    buckets = [int(hashlib.sha1(f"{salt}{i}".encode()).hexdigest()[:8], 16) % 1000 for i in item_ids]
    return np.asarray(buckets) < int(fraction * 1000)


def is_colour_vocabulary(labels) -> bool:
    """Do these labels name colours ("Dark Blue", "Off White", "red")? Then they are the shop's own
    colour words: colour tags use them rather than the 12 pixel colour names."""
    words = [str(label).lower() for label in labels]
    named = [any(re.search(rf"\b{c}\b", w) for c in BASIC_COLOURS) for w in words]
    return len(words) >= 2 and float(np.mean(named)) >= 0.6
