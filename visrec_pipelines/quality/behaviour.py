"""Behaviour events: derive the typed columns the suite checks, validate, keep typed valid rows."""
from __future__ import annotations

import time

import pandas as pd

from ..data.contract import EVENT_COLUMNS
from .suites import ValidationOutcome, validate

EVENTS_SUITE = "behaviour_events"
ITEMS_SUITE = "item_catalogue"
DEDUP_KEY = ["user_id", "item_id", "event_type", "value", "timestamp"]


def parse_timestamps(raw: pd.Series) -> pd.Series:
    """Text → unix seconds (float); NaN where the text is not an ISO-8601 / RFC 3339 date-time."""
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    epoch = (parsed - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(seconds=1)
    return epoch.astype(float)


def with_derived_columns(events: pd.DataFrame) -> pd.DataFrame:
    return events.assign(
        value_number=pd.to_numeric(events["value"], errors="coerce"),
        timestamp_epoch=parse_timestamps(events["timestamp"]),
        is_repeat=events.duplicated(subset=DEDUP_KEY, keep="first"),
    )


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
    quarantined = outcome.quarantined[list(EVENT_COLUMNS) + ["failed_checks", "reason"]]
    return ValidationOutcome(valid=typed.reset_index(drop=True), quarantined=quarantined,
                             expectations=outcome.expectations)


def validate_items(items: pd.DataFrame) -> ValidationOutcome:
    derived = items.assign(is_repeat=items.duplicated(subset=["item_id"], keep="first")
                           & items["item_id"].notna())
    outcome = validate(derived, ITEMS_SUITE)
    return ValidationOutcome(valid=outcome.valid.drop(columns="is_repeat"),
                             quarantined=outcome.quarantined.drop(columns="is_repeat"),
                             expectations=outcome.expectations)
