"""Behaviour events: derive the typed columns the suite checks, validate, keep typed valid rows."""
from __future__ import annotations

import time

import pandas as pd

from ..data.contract import EVENT_COLUMNS
from ..data.rules import EVENTS_SUITE, ITEMS_SUITE  # noqa: F401  (re-exported for the assets)
from ..times import parse_timestamps
from .suites import ValidationOutcome, validate

DEDUP_KEY = ["user_id", "item_id", "event_type", "value", "timestamp"]


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
