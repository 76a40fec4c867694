"""Behaviour events: derive the typed columns the suite checks, validate, keep typed valid rows."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.rules import EVENTS_SUITE, ITEMS_SUITE  # noqa: F401  (re-exported for the assets)
from ..data.tables import ROW_ERROR
from ..times import parse_timestamps
from .suites import ValidationOutcome, load_suite_spec, validate

DEDUP_KEY = ["user_id", "item_id", "event_type", "value", "timestamp"]
DERIVED = ["value_number", "timestamp_epoch"]
MALFORMED, ORPHAN = "malformed", "orphan"


def with_derived_columns(events: pd.DataFrame) -> pd.DataFrame:
    number = pd.to_numeric(events["value"], errors="coerce")
    return _with_row_error(events).assign(
        value_number=number.where(np.isfinite(number)),    # "1e999" is inf: not a usable value
        timestamp_epoch=parse_timestamps(events["timestamp"]),
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


@dataclass(frozen=True)
class EventsOutcome:
    """What became of every row: accepted (merged repeats counted in ``quantity``), malformed
    (quarantined), orphans (sound rows naming an unknown item or user, set aside). Counts in =
    accepted quantities + malformed + orphans."""
    valid: pd.DataFrame
    malformed: pd.DataFrame
    orphans: pd.DataFrame
    expectations: list
    rows_in: int
    retries_merged: int = 0       # rows repeating a posted event's id: the same event again

    @property
    def quarantined(self) -> pd.DataFrame:
        """Every row set aside, malformed or orphan, in source order."""
        return pd.concat([self.malformed, self.orphans]).sort_index()

    @property
    def malformed_fraction(self) -> float:
        return len(self.malformed) / self.rows_in if self.rows_in else 0.0

    @property
    def orphan_fraction(self) -> float:
        return len(self.orphans) / self.rows_in if self.rows_in else 0.0

    @property
    def repeats_merged(self) -> int:
        """Exact repeats counted into another row's quantity."""
        return int(self.valid["quantity"].sum() - len(self.valid)) if len(self.valid) else 0

    def reconciles(self) -> bool:
        accepted = int(self.valid["quantity"].sum()) if len(self.valid) else 0
        return accepted + self.retries_merged + len(self.malformed) + len(self.orphans) == self.rows_in

    def top_reasons(self, frame: pd.DataFrame, n: int = 3) -> list[tuple[str, int]]:
        """The checks that set the most of ``frame``'s rows aside, with counts."""
        counts = frame["failed_checks"].str.split(";").explode().value_counts() if len(frame) else pd.Series()
        return list(counts.head(n).items())


def validate_events(events: pd.DataFrame, known_item_ids, known_user_ids=None,
                    now: float | None = None) -> EventsOutcome:
    """Valid rows come back typed: value float (empty → 1.0 for implicit events), timestamp UTC,
    ``quantity`` the number of exact repeats merged into the row."""
    parameters = {"known_item_ids": sorted(set(known_item_ids)),
                  "now_epoch": time.time() if now is None else now}
    if known_user_ids is not None:
        parameters["known_user_ids"] = sorted(set(known_user_ids))
    outcome = validate(with_derived_columns(events), EVENTS_SUITE, parameters)
    set_aside = _quarantine_table(outcome.quarantined, DERIVED)
    orphan = _only_referential(set_aside["failed_checks"]) if len(set_aside) else pd.Series(dtype=bool)
    valid, retries = _typed_and_merged(outcome.valid)
    return EventsOutcome(valid=valid, malformed=set_aside[~orphan], orphans=set_aside[orphan],
                         expectations=outcome.expectations, rows_in=len(events), retries_merged=retries)


def _only_referential(failed_checks: pd.Series) -> pd.Series:
    kinds = {e["meta"]["check_name"]: e["meta"].get("kind", MALFORMED)
             for e in load_suite_spec(EVENTS_SUITE)["expectations"]}
    return failed_checks.map(lambda checks: all(kinds.get(c) == "referential" for c in checks.split(";")))


def _typed_and_merged(valid: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Typed rows; exact repeats (same user, item, type, value and time) become one row with their
    count as ``quantity`` — two of the same article bought at once is a quantity, not corrupt data.
    Rows carrying an ``event_id`` (posted feedback) are one event per id: a retry is not a second."""
    typed = pd.DataFrame({
        "user_id": valid["user_id"].astype(str),
        "item_id": valid["item_id"].astype(str),
        "event_type": valid["event_type"].astype(str),
        "value": valid["value_number"].fillna(1.0).astype(float),
        "timestamp": pd.to_datetime(valid["timestamp_epoch"], unit="s", utc=True),
    })
    has_id = valid["event_id"].notna().to_numpy() if "event_id" in valid else np.zeros(len(valid), bool)
    key = DEDUP_KEY + (["event_id"] if "event_id" in valid else [])
    groups = valid[key].astype(str).where(valid[key].notna(), "").groupby(key, sort=False, dropna=False).ngroup()
    first = ~groups.duplicated().to_numpy()
    sizes = groups.map(groups.value_counts()).to_numpy()
    typed["quantity"] = np.where(has_id, 1, sizes).astype(np.int64)
    retries = int((has_id & ~first).sum())
    return typed[first].reset_index(drop=True), retries


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


def gate_message(outcome: EventsOutcome, rows: pd.DataFrame, limit: float, option: str) -> str:
    """Why a threshold gate blocks, in one paragraph: how many, the dominating reasons with
    counts, and the exact option that changes the threshold."""
    fraction = len(rows) / outcome.rows_in if outcome.rows_in else 0.0
    what = "orphans (events on items or users the dataset does not know)" if rows is outcome.orphans \
        else "malformed"
    reasons = ", ".join(f"{check} {count:,}" for check, count in outcome.top_reasons(rows))
    suggested = min(1.0, round(fraction + 0.05, 2))
    return (f"{len(rows):,} of {outcome.rows_in:,} rows ({fraction:.0%}) are {what}, over the {limit:.0%} "
            f"threshold; most: {reasons}. If that is expected of this data, raise the threshold: "
            f"visrec run --set {option}={suggested}")
