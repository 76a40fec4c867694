"""Catalogue content (labels, title words, release date) and the content ranker that uses it with
the image features to find cold items."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from visrec_pipelines.recsys.base import TrainData
from visrec_pipelines.recsys.item_content import item_content
from visrec_pipelines.recsys.metrics import evaluate
from visrec_pipelines.recsys.models.vbpr import VBPR
from visrec_pipelines.recsys.models.visual_content import AGE_EDGES_DAYS, VisualContentRanker, age_buckets

DAY = 86400.0


def test_movielens_like_catalogue_labels_title_words_era_and_release_year():
    catalogue = pd.DataFrame({
        "item_id": [str(i) for i in range(12)],
        "title": [f"Star Trek {k} (199{k})" for k in range(6)] + ["Heat (1995)", "Alien (1979)",
                  "Aliens (1986)", "Toy Story (1995)", "Toy Story 2 (1999)", "Untitled"],
        "genres": ["Sci-Fi|Action"] * 6 + ["Action|Crime", "Horror|Sci-Fi", "Action|Sci-Fi",
                   "Children|Comedy", "Children|Comedy", "(no genres listed)"],
        "image_path": "x.jpg"})
    content = item_content(catalogue, ["11", "0", "9"])              # rows follow the ids asked for
    names = content.names
    assert {"genres=Sci-Fi", "genres=Action", "title:star", "title:trek", "title:toy", "title:story"} <= set(names)
    assert "title:heat" not in names and "title:1995" not in names   # one title only; the year is not a word
    row = dict(zip(names, content.attributes[1].toarray().ravel()))  # Star Trek 0 (1990)
    assert row["genres=Sci-Fi"] == 1 and row["era=1990-1994"] == 1 and row["era=1975-1979"] == 0
    assert "genres=Children" not in names                            # too rare (< 5 items) to generalise
    assert row["title:star"] > 0 and row["title:toy"] == 0
    assert np.isnan(content.available_since[0])                      # "Untitled": no year, no date
    assert content.available_since[1] == pd.Timestamp("1990-01-01", tz="UTC").timestamp()
    assert content.available_since[2] == pd.Timestamp("1995-01-01", tz="UTC").timestamp()
    with pytest.raises(ValueError, match="no catalogue row"):
        item_content(catalogue, ["0", "missing"])


def test_shop_catalogue_dates_come_from_added_at():
    catalogue = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["red shirt", "blue shirt", "bag"],
                              "category": ["top", "top", "bag"], "added_at": ["2026-01-02T00:00:00Z", "", "bad"]})
    content = item_content(catalogue, ["a", "b", "c"])
    assert content.available_since[0] == pd.Timestamp("2026-01-02", tz="UTC").timestamp()
    assert np.isnan(content.available_since[1:]).all()               # missing and unparsable: unknown
    assert "title:shirt" in content.names and content.attributes.shape[0] == 3


def test_age_buckets_hand_computed():
    now = 1_000 * DAY
    available = np.array([np.nan, now + DAY, now - 3 * DAY, now - 10 * DAY, now - 400 * DAY, now - 60 * 365 * DAY])
    buckets = age_buckets(now, available)
    assert list(buckets) == [0, 1, 2, 3, 2 + 5, len(AGE_EDGES_DAYS) + 1]


def new_arrivals(seed: int = 0, n_early: int = 150, n_late: int = 40, n_warm: int = 80, n_cold: int = 20) -> tuple:
    """Everyone takes what came out in the last month, and nothing else tells items apart (images
    are noise, no labels). Early users (days 60-250) show it on items that are all warm; late users
    (day 301) have only older items in train, and in test the 20 items that arrived since day 285,
    which nobody has touched: only their age can find them."""
    rng = np.random.default_rng(seed)
    n_items, n_users = n_warm + n_cold, n_early + n_late
    available = np.r_[np.linspace(0, 250, n_warm), np.linspace(285, 300, n_cold)] * DAY
    features = rng.normal(size=(n_items, 8)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    train, test = [], []
    for u in range(n_users):
        now = rng.uniform(60, 250) * DAY if u < n_early else 301 * DAY
        age = now - available[:n_warm]
        young, old = np.flatnonzero((age >= 0) & (age < 30 * DAY)), np.flatnonzero(age >= 30 * DAY)
        if u < n_early:
            train += [(u, i, now) for i in rng.choice(young, min(6, len(young)), replace=False)]
        train += [(u, i, now) for i in rng.choice(old, 2, replace=False)]
        if u >= n_early:
            test += [(u, i, now + 9 * DAY) for i in rng.choice(np.arange(n_warm, n_items), 2, replace=False)]

    def as_data(rows):
        rows = np.array(rows)
        return TrainData(np.array([f"u{u}" for u in range(n_users)]), np.array([f"i{i}" for i in range(n_items)]),
                         rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 2], features,
                         item_available=available)
    return as_data(train), as_data(test)


def test_learns_that_people_want_new_arrivals_and_finds_them_cold():
    train, test = new_arrivals()
    split = SimpleNamespace(train=train, test=test)
    model = VisualContentRanker(factors=4, epochs=30, batch_size=256, lr=0.02, members=1, patience=None).fit(train)
    with_dates = evaluate(model, split)
    # 20 cold items among ~98 candidates: a blind top 20 finds about a fifth of them
    assert with_dates["cold_recall@20"] > 0.5, with_dates
    undated = replace(train, item_available=None)
    blind = VisualContentRanker(factors=4, epochs=30, batch_size=256, lr=0.02, members=1, patience=None).fit(undated)
    assert evaluate(blind, SimpleNamespace(train=undated, test=test))["cold_recall@20"] < 0.3
    vbpr = VBPR(factors=4, visual_factors=4, epochs=30, lr=0.02, patience=None).fit(train)
    assert evaluate(vbpr, split)["cold_recall@20"] < 0.3                 # images alone carry nothing here


def test_labels_alone_find_cold_items_when_images_say_nothing():
    """Users like one category; images are noise; the cold items are found by their label."""
    rng = np.random.default_rng(1)
    n_users, per, categories = 80, 25, 4
    n_items = per * categories
    category = np.repeat(np.arange(categories), per)
    catalogue = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "title": "",
                              "category": [f"c{c}" for c in category]})
    train_rows, test_rows = [], []
    for u in range(n_users):
        mine = np.flatnonzero(category == u % categories)
        train_rows += [(u, i) for i in rng.choice(mine[:20], 8, replace=False)]
        test_rows += [(u, i) for i in rng.choice(mine[20:], 2, replace=False)]   # the last 5: cold
    content = item_content(catalogue, catalogue["item_id"])
    features = rng.normal(size=(n_items, 8)).astype(np.float32)

    def as_data(rows):
        rows = np.array(rows)
        return TrainData(np.array([f"u{u}" for u in range(n_users)]), catalogue["item_id"].to_numpy(),
                         rows[:, 0], rows[:, 1], np.zeros(len(rows)),
                         features / np.linalg.norm(features, axis=1)[:, None],
                         item_attributes=content.attributes, item_available=content.available_since)
    train, test = as_data(train_rows), as_data(test_rows)
    model = VisualContentRanker(factors=4, epochs=30, batch_size=256, lr=0.02, members=1, patience=None).fit(train)
    assert evaluate(model, SimpleNamespace(train=train, test=test))["cold_recall@20"] > 0.9


def test_needs_some_content():
    train, _ = new_arrivals()
    with pytest.raises(ValueError, match="needs image features or item attributes"):
        VisualContentRanker(epochs=1, use_image=False).fit(train)
