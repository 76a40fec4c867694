"""The evaluation split on a hand-made event table, every step checked by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from visrec_pipelines.recsys.split import make_split


def events(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "value", "t"])
    frame["timestamp"] = pd.to_datetime(frame.pop("t"), unit="s", utc=True)
    return frame


CATALOGUE = ["a", "b", "d", "e", "f", "g", "h", "9", "10", "never"]   # "zz" is not in it

ROWS = [
    # alice: a b d e f positive (c is 3.5: not positive; a's later view is a duplicate; zz off-catalogue)
    ("alice", "a", "rating", 5.0, 100), ("alice", "b", "rating", 4.0, 200),
    ("alice", "c", "rating", 3.5, 300), ("alice", "d", "rating", 4.5, 400),
    ("alice", "e", "purchase", 1.0, 500), ("alice", "f", "click", 1.0, 600),
    ("alice", "a", "view", 1.0, 700), ("alice", "zz", "rating", 5.0, 650),
    # bob: 7 positives; "9" and "10" tie at t=50 (numeric id order: 9 before 10); h only in bob's test
    ("bob", "10", "rating", 4.0, 50), ("bob", "9", "rating", 5.0, 50),
    ("bob", "a", "view", 1.0, 10), ("bob", "b", "rating", 4.0, 60), ("bob", "d", "view", 1.0, 70),
    ("bob", "e", "rating", 5.0, 80), ("bob", "h", "purchase", 1.0, 90),
    ("bob", "b", "rating", 5.0, 5),          # an earlier positive on b: dedup keeps t=5
    # carol: only 4 positives → dropped
    ("carol", "a", "rating", 4.0, 1), ("carol", "b", "rating", 4.0, 2), ("carol", "d", "rating", 4.0, 3),
    ("carol", "e", "rating", 4.0, 4), ("carol", "g", "rating", 1.0, 5),
]


@pytest.fixture
def split():
    return make_split(events(ROWS), CATALOGUE)


def held(data, user: str) -> list[str]:
    u = list(data.user_ids).index(user)
    order = np.lexsort((data.items, data.timestamps))
    return [data.item_ids[i] for i in data.items[order][data.users[order] == u]]


def test_report_counts_every_drop(split):
    r = split.report
    assert r["events_in"] == len(ROWS) == 21
    # positives: alice 7 (a b d e f a-view zz), bob 8, carol 4
    assert r["positives"] == 19
    assert r["duplicates_removed"] == 2            # alice's a-view, bob's second b
    assert r["off_catalogue_dropped"] == 1         # alice's zz
    assert r["users_below_min"] == 1 and r["positives_of_users_below_min"] == 4
    assert (r["users"], r["items"], r["test_users"]) == (2, len(CATALOGUE), 2)
    # alice 5 → 1 test, 4 train → 1 validation; bob 7 → ceil(1.4) = 2 test, 5 train → 1 validation
    assert (r["train"], r["test"], r["validation"], r["tune_train"]) == (9, 3, 2, 7)


def test_chronological_last_twenty_percent_rounded_up(split):
    assert held(split.test, "alice") == ["f"]
    assert held(split.train, "alice") == ["a", "b", "d", "e"]
    # bob in (time, id) order: b(5) a(10) 9(50) 10(50) d(70) e(80) h(90)
    assert held(split.train, "bob") == ["b", "a", "9", "10", "d"]
    assert held(split.test, "bob") == ["e", "h"]


def test_dedup_keeps_the_earliest_timestamp(split):
    bob, b = list(split.train.user_ids).index("bob"), list(split.train.item_ids).index("b")
    mask = (split.train.users == bob) & (split.train.items == b)
    assert split.train.timestamps[mask].tolist() == [5.0]


def test_validation_is_carved_from_train_the_same_way(split):
    assert held(split.validation, "alice") == ["e"] and held(split.validation, "bob") == ["d"]
    tune = split.tune_data()
    assert held(tune, "alice") == ["a", "b", "d"] and held(tune, "bob") == ["b", "a", "9", "10"]
    tuning = split.for_tuning()
    assert tuning.train.users.tolist() == tune.users.tolist()
    assert tuning.test.items.tolist() == split.validation.items.tolist()


def test_item_space_is_the_whole_catalogue_and_cold_items_are_counted(split):
    assert list(split.train.item_ids) == CATALOGUE        # "never" and "g" are rankable
    assert split.test.n_items == split.validation.n_items == len(CATALOGUE)
    # warm: a b d e 9 10; cold: f g h never. Test positives f (alice) and h (bob) are cold, e is not
    assert split.report["cold_items"] == 4 and split.report["cold_test_positives"] == 2


def test_parameters_change_the_protocol_and_are_recorded():
    split = make_split(events(ROWS), CATALOGUE, implicit_positive_types=("purchase", "click"),
                       min_positives=4, rating_threshold=4.5)
    # views and 4.0 ratings no longer count: alice a d e f zz, bob 9 e h b(5.0 at t=5), carol none
    assert split.report["positives"] == 9 and split.report["off_catalogue_dropped"] == 1
    assert split.report["users"] == 2 and split.report["test"] == 2     # 4 each → 1 test each
    assert split.protocol["min_positives"] == 4 and split.protocol["rating_threshold"] == 4.5
    assert split.protocol["implicit_positive_types"] == ["purchase", "click"]


def test_item_features_are_attached_normalised_to_every_part(split):
    features = np.arange(len(CATALOGUE) * 3, dtype=np.float32).reshape(-1, 3) + 1
    with_features = split.with_item_features(features)
    parts = (with_features.train, with_features.validation, with_features.test, with_features.tune_data())
    for part in parts:
        np.testing.assert_allclose(np.linalg.norm(part.item_features, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError):
        split.with_item_features(features[:3])


def test_twenty_percent_of_fifteen_is_three_not_four():
    # 0.2 * 15 = 3.0000000000000004 in floating point: a naive ceil would hold out 4
    rows = [("dave", str(i), "rating", 5.0, i) for i in range(15)]
    split = make_split(events(rows), [str(i) for i in range(15)])
    assert split.report["test"] == 3 and split.report["train"] == 12
    assert split.report["validation"] == 3          # ceil(0.2 * 12) = 3 (2.4 → 3)
