"""A corpus of bad event rows: each is quarantined (malformed) or set aside (orphan) with the right
failed check; exact repeats are merged into a quantity; none is lost."""
import time

import pandas as pd
import pytest

from visrec_pipelines.quality.behaviour import validate_events, validate_items
from visrec_pipelines.quality.suites import check_names

NOW = pd.Timestamp("2026-01-01", tz="UTC").timestamp()
GOOD = {"user_id": "u1", "item_id": "i1", "event_type": "click", "value": None,
        "timestamp": "2025-06-01T12:00:00Z"}

# (label, overrides of a good row, the check that must catch it)
BAD_ROWS = [
    ("null user", {"user_id": None}, "user_id_present"),
    ("null item", {"item_id": None}, "item_id_present"),
    ("null event type", {"event_type": None}, "event_type_present"),
    ("null timestamp", {"timestamp": None}, "timestamp_present"),
    ("malformed user id", {"user_id": "DROP TABLE users;"}, "user_id_well_formed"),
    ("unknown user", {"user_id": "u999"}, "user_id_known"),
    ("unknown item", {"item_id": "i999"}, "item_id_known"),
    ("unknown event type", {"event_type": "teleport"}, "event_type_known"),
    ("value of the wrong type", {"event_type": "purchase", "value": "lots"}, "value_numeric"),
    ("unparseable timestamp", {"timestamp": "last tuesday"}, "timestamp_parseable"),
    ("timestamp in the future", {"timestamp": "2031-01-01T00:00:00Z"}, "timestamp_not_in_future"),
    ("timestamp before 1990", {"timestamp": "1969-07-20T20:17:00Z"}, "timestamp_after_1990"),
    ("rating without value", {"event_type": "rating", "value": None}, "rating_has_value"),
    ("rating above range", {"event_type": "rating", "value": "7"}, "rating_in_range"),
    ("rating below range", {"event_type": "rating", "value": "0"}, "rating_in_range"),
    ("rating that overflows to infinity", {"event_type": "rating", "value": "1e999"}, "value_numeric"),
    ("value of minus infinity", {"event_type": "purchase", "value": "-1e999"}, "value_numeric"),
    ("value spelled nan", {"event_type": "purchase", "value": "nan"}, "value_numeric"),
    ("row the reader could not read", {"row_error": "row has 3 fields; the header has 5",
                                       "timestamp": "2025-06-09T12:00:00Z"}, "row_well_formed"),
]


def corpus() -> pd.DataFrame:
    good = [dict(GOOD, item_id=f"i{k % 3 + 1}", timestamp=f"2025-06-0{k + 1}T12:00:00Z") for k in range(5)]
    good.append(dict(GOOD, event_type="rating", value="4.5"))
    bad = [dict(GOOD, **overrides, label=label) for label, overrides, _ in BAD_ROWS]
    duplicate = dict(good[0], label="exact duplicate")
    rows = [dict(r, label=r.get("label", "good")) for r in good] + bad + [duplicate]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def outcome():
    events = corpus()
    result = validate_events(events.drop(columns="label"), known_item_ids=["i1", "i2", "i3"],
                             known_user_ids=["u1", "DROP TABLE users;"], now=NOW)
    return events, result


def test_nothing_is_lost(outcome):
    events, result = outcome
    assert result.reconciles() and result.valid["quantity"].sum() + len(result.quarantined) == len(events)
    assert len(result.valid) == 6 and result.repeats_merged == 1


def test_an_exact_repeat_is_a_quantity_not_a_bad_row(outcome):
    events, result = outcome
    first = result.valid.iloc[0]
    assert (first["user_id"], first["item_id"], first["quantity"]) == ("u1", "i1", 2)
    assert result.valid["quantity"].iloc[1:].eq(1).all()


def test_orphans_are_set_apart_from_malformed_rows(outcome):
    events, result = outcome
    labels = events.loc[result.orphans.index, "label"].tolist()
    assert labels == ["unknown user", "unknown item"]
    assert not set(result.orphans.index) & set(result.malformed.index)
    assert result.orphan_fraction == 2 / len(events)


@pytest.mark.parametrize("label,check", [(label, check) for label, _, check in BAD_ROWS])
def test_each_bad_row_is_quarantined_with_its_reason(outcome, label, check):
    events, result = outcome
    row = events.index[events["label"] == label][0]
    assert row in result.quarantined.index, f"{label} was not quarantined"
    failed = result.quarantined.loc[row, "failed_checks"].split(";")
    assert check in failed
    assert result.quarantined.loc[row, "reason"]


def test_an_unreadable_row_says_why_in_its_reason(outcome):
    events, result = outcome
    row = events.index[events["label"] == "row the reader could not read"][0]
    assert result.quarantined.loc[row, "reason"].startswith("row has 3 fields; the header has 5; ")


def test_no_infinite_or_missing_value_is_stored(outcome):
    _, result = outcome
    assert result.valid["value"].between(0, 5).all()


def test_events_with_their_own_ids_are_never_repeats_of_each_other():
    """Feedback posted with distinct event ids is distinct events, however alike; the same id twice
    is one event."""
    landed = pd.DataFrame([dict(GOOD, event_id="e1"), dict(GOOD, event_id="e2"), dict(GOOD, event_id="e2"),
                           dict(GOOD, event_id="e3", item_id="nope")])
    result = validate_events(landed, ["i1"], now=NOW)
    assert len(result.valid) == 2 and result.valid["quantity"].tolist() == [1, 1]   # a retry is not a second
    assert result.retries_merged == 1 and result.reconciles()
    assert result.orphans["event_id"].tolist() == ["e3"]          # what is set aside keeps every column


def test_valid_rows_are_typed(outcome):
    _, result = outcome
    valid = result.valid
    assert str(valid["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert valid["value"].dtype == float
    assert valid.loc[valid["event_type"] == "click", "value"].eq(1.0).all()
    assert valid.loc[valid["event_type"] == "rating", "value"].tolist() == [4.5]


def test_per_expectation_counts_cover_the_suite(outcome):
    _, result = outcome
    counts = {e.check_name: e.unexpected_count for e in result.expectations}
    assert list(counts) == check_names("behaviour_events")
    assert counts["rating_in_range"] == 2 and counts["item_id_known"] == 1


def test_unknown_users_not_checked_without_users_table():
    events = pd.DataFrame([dict(GOOD, user_id="anyone")])
    result = validate_events(events, known_item_ids=["i1"], now=NOW)
    assert len(result.valid) == 1
    skipped = [e for e in result.expectations if e.check_name == "user_id_known"]
    assert skipped[0].evaluated is False


def test_future_is_relative_to_now():
    events = pd.DataFrame([dict(GOOD, timestamp="2099-01-01T00:00:00Z")])
    assert len(validate_events(events, ["i1"], now=time.time()).quarantined) == 1


def test_item_rules():
    items = pd.DataFrame({"item_id": ["a", "a", None, "b c", "d"], "image_path": [None] * 5,
                          "title": ["x"] * 5})
    result = validate_items(items)
    assert result.valid["item_id"].tolist() == ["a", "d"]
    assert result.quarantined["failed_checks"].tolist() == ["item_id_unique", "item_id_present",
                                                           "item_id_well_formed"]
