"""One time-stamp parser for importers and validation: every common form, units decided per
column, declared formats, and nothing guessed."""
import time

import numpy as np
import pandas as pd
import pytest

from visrec_pipelines.times import check_format, contract_timestamps, parse_timestamps

JAN2 = 1704164645.0    # 2024-01-02T03:04:05Z


def iso(values, fmt=None) -> list:
    return contract_timestamps(values, fmt).tolist()


def test_iso_forms_with_or_without_offset_and_date_only():
    assert iso(["2024-01-02T03:04:05Z", "2024-01-02T05:04:05+02:00", "2024-01-02 03:04:05",
                "2024-01-02T03:04:05 UTC", "2024-01-02T03:04:05z"]) == ["2024-01-02T03:04:05Z"] * 5
    assert iso(["2024-01-02"]) == ["2024-01-02T00:00:00Z"]               # midnight UTC
    assert iso(["2024-01-02T03:04:05.250+00:00", "2024-01-02"]) == [
        "2024-01-02T03:04:05.250Z", "2024-01-02T00:00:00.000Z"]             # one precision per column


def test_unix_time_unit_by_the_columns_magnitude():
    assert iso(["1704164645", "1704164646"]) == ["2024-01-02T03:04:05Z", "2024-01-02T03:04:06Z"]
    assert iso(["1704164645123"]) == ["2024-01-02T03:04:05.123Z"]
    assert iso(["1704164645123456"]) == ["2024-01-02T03:04:05.123456Z"]
    assert iso(["1704164645.5"]) == ["2024-01-02T03:04:05.500Z"]
    np.testing.assert_allclose(parse_timestamps(pd.Series(["1704164645123", "1704164645000"])), [JAN2 + 0.123, JAN2])


def test_one_odd_value_cannot_flip_a_columns_unit():
    seconds = [str(int(JAN2) + k) for k in range(5)]
    stamps = parse_timestamps(pd.Series(seconds + ["1704164645123"]))     # one millisecond value
    np.testing.assert_allclose(stamps[:5], JAN2 + np.arange(5))             # still seconds
    assert np.isnan(stamps[5])            # the odd one read as seconds is out of range: quarantined
    millis = parse_timestamps(pd.Series([str(int(JAN2) * 1000 + k) for k in range(5)] + ["1704164645"]))
    np.testing.assert_allclose(millis[:5], JAN2 + np.arange(5) / 1000)
    assert millis[5] < 2e6                # 1704164645 ms is January 1970: quarantined as before 1990


def test_declared_formats():
    assert iso(["1704164645123"], "unix_ms") == ["2024-01-02T03:04:05.123Z"]
    assert iso(["1704164645"], "unix_ms") == ["1970-01-20T17:22:44.645Z"]         # declared wins
    assert iso(["02/01/2024", "13/01/2024"], "%d/%m/%Y") == ["2024-01-02T00:00:00Z", "2024-01-13T00:00:00Z"]
    assert iso(["1704164645", "2024-01-02"], "iso") == ["1704164645", "2024-01-02T00:00:00Z"]
    assert iso(["2024-01-02"], "unix_s") == ["2024-01-02"]
    with pytest.raises(ValueError, match="strptime pattern"):
        check_format("dd/mm/yyyy")


def test_nothing_is_guessed_unparseable_values_stay_as_they_are():
    values = ["02/01/2024", "yesterday", "", None, "2024-13-45", "1e999"]
    assert np.isnan(parse_timestamps(pd.Series(values))).all()
    assert iso(values) == values                                 # the importer writes them verbatim


def test_round_trip_through_the_contract_form():
    values = pd.Series(["1704164645", "1704164700", "bad", None, "1704164645"])
    np.testing.assert_array_equal(parse_timestamps(contract_timestamps(values)), parse_timestamps(values))


def test_unix_second_events_pass_the_pipelines_validation():
    """The issue: unix seconds used to be quarantined as unparseable (100,000 of 100,000)."""
    from visrec_pipelines.quality.behaviour import validate_events

    events = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "a", "a"],
                           "event_type": ["view"] * 3, "value": [None] * 3,
                           "timestamp": ["1704164645", "1704164700", "31/12/2024"]})
    outcome = validate_events(events, known_item_ids=["a"], now=1.9e9)
    assert len(outcome.valid) == 2
    assert outcome.quarantined["failed_checks"].tolist() == ["timestamp_parseable"]


def test_millions_of_rows_in_seconds():
    days = pd.date_range("2018-09-20", periods=700).strftime("%Y-%m-%d").to_numpy()
    column = pd.Series(np.random.default_rng(0).choice(days, 2_000_000))
    started = time.perf_counter()
    written = contract_timestamps(column)
    assert written.iloc[0].endswith("T00:00:00Z") and time.perf_counter() - started < 20
