"""The built-in demo dataset: contract, images, determinism, time travel and the taste signal."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from visrec_pipelines.data.contract import EVENT_COLUMNS, EVENT_TYPES, Dataset
from visrec_pipelines.data.demo import COLOURS, generate_demo

SMALL = {"n_items": 60, "n_users": 20, "image_size": 96}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Dataset:
    return generate_demo(tmp_path_factory.mktemp("demo") / "small", seed=3, **SMALL)


@pytest.fixture(scope="module")
def moderate(tmp_path_factory) -> Dataset:
    return generate_demo(tmp_path_factory.mktemp("demo") / "moderate", n_items=300, n_users=100,
                         image_size=32, seed=1)


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, format="ISO8601")


def test_tables_follow_the_contract(small):
    items, events, users = small.read_items(), small.read_events(), small.read_users()
    assert list(items.columns) == ["item_id", "image_path", "title", "category", "colour", "pattern",
                                   "added_at"]
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert list(users.columns) == ["user_id", "fav_categories", "fav_colours", "fav_patterns"]
    assert len(items) == 60 and items["item_id"].is_unique and items["item_id"].iloc[42] == "i00042"
    assert items["image_path"].iloc[42] == "images/i00042.jpg"
    assert len(users) == 20 and users["user_id"].iloc[7] == "u0007"
    assert set(events["user_id"]) <= set(users["user_id"])
    assert set(events["item_id"]) <= set(items["item_id"])
    row = items.iloc[0]
    assert row["title"].lower().startswith(row["colour"]) and row["title"].endswith(row["category"])
    manifest = small.read_manifest()
    assert manifest["source"] == "demo"
    assert manifest["params"] == {"n_items": 60, "n_users": 20, "seed": 3, "image_size": 96}
    assert manifest["counts"]["events"] == len(events)
    assert manifest["colours"] == list(COLOURS)


def test_users_have_a_ground_truth_taste(small):
    users, manifest = small.read_users(), small.read_manifest()
    for column, known, (fewest, most) in [("fav_categories", manifest["categories"], (1, 2)),
                                          ("fav_colours", manifest["colours"], (2, 3)),
                                          ("fav_patterns", manifest["patterns"], (1, 2))]:
        for favourites in users[column].str.split("|"):
            assert fewest <= len(favourites) <= most and set(favourites) <= set(known)


def test_every_image_is_an_rgb_jpeg_of_the_right_size(small):
    items = small.read_items()
    on_disk = sorted(p.name for p in small.images_dir.iterdir())
    assert on_disk == sorted(Path(p).name for p in items["image_path"])
    for path in items["image_path"]:
        with Image.open(small.image_file(path)) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (96, 96))


def test_solid_items_are_dominantly_their_named_colour(small):
    names = list(COLOURS)
    palette = np.array([COLOURS[name] for name in names], dtype=float)
    solid = small.read_items().query("pattern == 'solid'")
    assert len(solid) > 5
    for row in solid.itertuples():
        pixels = np.asarray(Image.open(small.image_file(row.image_path)), dtype=float)
        background = np.median(pixels[:3].reshape(-1, 3), axis=0)  # the top rows are backdrop
        on_object = np.abs(pixels - background).max(axis=2) > 60
        # Skip the darker outline: keep object pixels whose four neighbours are object too.
        neighbours = [np.roll(on_object, step, axis) for step in (1, -1) for axis in (0, 1)]
        inside = on_object & np.all(neighbours, axis=0)
        dominant = np.median(pixels[inside], axis=0)
        assert names[np.linalg.norm(palette - dominant, axis=1).argmin()] == row.colour, row.item_id


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    first = generate_demo(tmp_path / "a", seed=5, **SMALL)
    second = generate_demo(tmp_path / "b", seed=5, **SMALL)
    other = generate_demo(tmp_path / "c", seed=6, **SMALL)
    files = ["items.csv", "users.csv", "events.csv", "dataset.json",
             "images/i00000.jpg", "images/i00017.jpg", "images/i00059.jpg"]
    for name in files:
        assert (first.root / name).read_bytes() == (second.root / name).read_bytes(), name
    for name in ["items.csv", "events.csv", "images/i00000.jpg"]:
        assert (first.root / name).read_bytes() != (other.root / name).read_bytes(), name


def test_events_are_valid_and_sorted_by_time(small):
    events = small.read_events()
    assert set(events["event_type"]) == set(EVENT_TYPES)
    assert events["timestamp"].str.endswith("Z").all()
    times = _utc(events["timestamp"])
    assert times.is_monotonic_increasing
    assert times.min() >= pd.Timestamp("2025-01-01", tz="UTC")
    assert times.max() < pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=120)
    values = events.groupby("event_type")["value"]
    assert values.get_group("view").isna().all() and values.get_group("click").isna().all()
    assert set(values.get_group("purchase")) == {"1"} and set(values.get_group("add_to_cart")) == {"1"}
    assert set(values.get_group("rating")) <= {"1", "2", "3", "4", "5"}
    views_per_user = events.query("event_type == 'view'").groupby("user_id").size()
    assert len(views_per_user) == 20 and views_per_user.between(20, 80).all()


def test_users_only_interact_with_items_already_added(moderate):
    items = moderate.read_items()
    events = moderate.read_events().merge(items[["item_id", "added_at"]], on="item_id")
    assert (_utc(events["timestamp"]) >= _utc(events["added_at"])).all()
    # New arrivals exist and some of them are interacted with: the cold-start case is covered.
    added = _utc(items["added_at"])
    new_items = set(items.loc[added > added.min(), "item_id"])
    assert 0.2 < len(new_items) / len(items) < 0.4
    assert len(new_items & set(events["item_id"])) > 10


def test_purchases_and_clicks_follow_the_users_taste(moderate):
    items = moderate.read_items().set_index("item_id")
    users = moderate.read_users().set_index("user_id")
    events = moderate.read_events().join(items, on="item_id").join(users, on="user_id")
    colour_share = items["colour"].value_counts(normalize=True)
    base_rate = users["fav_colours"].str.split("|").map(lambda fav: colour_share[fav].sum()).mean()
    for event_type in ("click", "purchase"):
        chosen = events[events["event_type"] == event_type]
        matches = [colour in fav.split("|") for colour, fav in zip(chosen["colour"], chosen["fav_colours"])]
        assert np.mean(matches) > base_rate + 0.3, (event_type, np.mean(matches), base_rate)


def test_regenerating_with_fewer_items_leaves_no_stale_images(tmp_path):
    generate_demo(tmp_path, n_items=40, n_users=5, image_size=32)
    dataset = generate_demo(tmp_path, n_items=12, n_users=5, image_size=32)
    assert sorted(p.name for p in dataset.images_dir.iterdir()) == [f"i{i:05d}.jpg" for i in range(12)]
    assert len(dataset.read_items()) == 12


def test_rejects_empty_demo(tmp_path):
    with pytest.raises(ValueError):
        generate_demo(tmp_path, n_items=0)
