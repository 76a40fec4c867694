"""Behaviour events: derive the typed columns the suite checks, validate, keep typed valid rows."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..data.rules import EVENTS_SUITE, ITEMS_SUITE  # noqa: F401  (re-exported for the assets)
from ..data.tables import ROW_ERROR
from ..times import parse_timestamps
from .suites import ValidationOutcome, validate

DEDUP_KEY = ["user_id", "item_id", "event_type", "value", "timestamp"]
DERIVED = ["value_number", "timestamp_epoch", "is_repeat"]


def with_derived_columns(events: pd.DataFrame) -> pd.DataFrame:
    number = pd.to_numeric(events["value"], errors="coerce")
    # events with distinct ids are distinct events, however alike (the serving API's feedback)
    key = DEDUP_KEY + (["event_id"] if "event_id" in events else [])
    return _with_row_error(events).assign(
        value_number=number.where(np.isfinite(number)),    # "1e999" is inf: not a usable value
        timestamp_epoch=parse_timestamps(events["timestamp"]),
        is_repeat=events.duplicated(subset=key, keep="first"),
    )


def _with_row_error(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows the reader could not read carry their reason; the rule row_well_formed needs the column."""
    return frame if ROW_ERROR in frame else frame.assign(**{ROW_ERROR: None})


def _quarantine_table(quarantined: pd.DataFrame, derived: list[str]) -> pd.DataFrame:
    """Every source column of the bad rows, plus failed_checks and the reason in words (a row the
    reader could not read says why it could not)."""
    out = quarantined.drop(columns=derived)
    unreadable = out[ROW_ERROR].notna()
    out.loc[unreadable, "reason"] = out.loc[unreadable, ROW_ERROR] + "; " + out.loc[unreadable, "reason"]
    if not unreadable.any():
        out = out.drop(columns=[ROW_ERROR])
    return out


def validate_events(events: pd.DataFrame, known_item_ids, known_user_ids=None,
                    now: float | None = None) -> ValidationOutcome:
    """Valid rows come back typed: value float (empty → 1.0 for implicit events), timestamp UTC."""
    parameters = {"known_item_ids": sorted(set(known_item_ids)),
                  "now_epoch": time.time() if now is None else now}
    if known_user_ids is not None:
        parameters["known_user_ids"] = sorted(set(known_user_ids))
    outcome = validate(with_derived_columns(events), EVENTS_SUITE, parameters)
    valid = outcome.valid
    typed = pd.DataFrame({
        "user_id": valid["user_id"].astype(str),
        "item_id": valid["item_id"].astype(str),
        "event_type": valid["event_type"].astype(str),
        "value": valid["value_number"].fillna(1.0).astype(float),
        "timestamp": pd.to_datetime(valid["timestamp_epoch"], unit="s", utc=True),
    })
    return ValidationOutcome(valid=typed.reset_index(drop=True),
                             quarantined=_quarantine_table(outcome.quarantined, DERIVED),
                             expectations=outcome.expectations)


def validate_items(items: pd.DataFrame) -> ValidationOutcome:
    derived = _with_row_error(items).assign(is_repeat=~first_rows(items))
    outcome = validate(derived, ITEMS_SUITE)
    return ValidationOutcome(valid=outcome.valid.drop(columns=["is_repeat", ROW_ERROR]),
                             quarantined=_quarantine_table(outcome.quarantined, ["is_repeat"]),
                             expectations=outcome.expectations)


def first_rows(items: pd.DataFrame) -> pd.Series:
    """True for each item id's first row (a repeated id's later rows lose, everywhere: catalogue,
    images, embeddings); rows without an id count as first (they are quarantined as missing)."""
    return ~items.duplicated(subset=["item_id"], keep="first") | items["item_id"].isna()


def image_candidates(items: pd.DataFrame) -> pd.DataFrame:
    """The rows whose image is worth opening: an id, its first row, read cleanly. The others are
    excluded by validation with their own reason, so opening their images would only mislead."""
    readable = items[ROW_ERROR].isna() if ROW_ERROR in items else True
    return items[first_rows(items) & items["item_id"].notna() & readable]
