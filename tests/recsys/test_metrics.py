"""Metrics on tiny hand-computed cases, plus the vectorised parts against brute force."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from visrec_pipelines.recsys.base import Ranker, TrainData
from visrec_pipelines.recsys.metrics import _auc, _masked_scores, _top_k, evaluate


class FixedScores(Ranker):
    def __init__(self, scores):
        super().__init__()
        self.scores = np.asarray(scores, dtype=float)

    def fit(self, data, validation=None):
        self.seen = data.matrix()
        return self

    def score(self, users):
        return self.scores[np.asarray(users)]


def data(pairs: dict[int, list[int]], n_users: int = 4, n_items: int = 6) -> TrainData:
    users = np.array([u for u, items in pairs.items() for _ in items], dtype=int)
    items = np.array([i for items in pairs.values() for i in items], dtype=int)
    return TrainData(np.array([f"u{u}" for u in range(n_users)]), np.array([f"i{i}" for i in range(n_items)]),
                     users, items, np.zeros(len(users)))


# 4 users, 6 items. u3 only trains (so items 2, 3, 4 are warm); item 5 has no train interaction: cold.
TRAIN = data({0: [0], 1: [1], 2: [0, 1], 3: [2, 3, 4]})
TEST = data({0: [2, 5], 1: [3], 2: [4, 5]})
SCORES = [
    [9, 1, 5, 4, 3, 6],   # u0: candidates (item 0 excluded) rank 5 2 3 4 1 → top-2 [5, 2]
    [1, 9, 3, 1, 3, 0],   # u1: candidates rank 2 4 (tie → lower index) 0 3 (tie) 5 → top-2 [2, 4]
    [0, 0, 9, 2, 8, 7],   # u2: candidates rank 2 4 5 3 → top-2 [2, 4]
    [0, 0, 0, 0, 0, 0],   # u3: not a test user
]


def test_hand_computed_case_at_k2():
    result = evaluate(FixedScores(SCORES).fit(TRAIN), SimpleNamespace(train=TRAIN, test=TEST), k=2)
    # u0 test {2, 5}: both in [5, 2] → recall 1, precision 1, ndcg (1 + 1/log2 3)/(1 + 1/log2 3) = 1
    # u1 test {3}: no hit → 0, 0, 0
    # u2 test {4, 5}: 4 at rank 2 → recall 1/2, precision 1/2, ndcg (1/log2 3)/(1 + 1/log2 3) = 0.386853
    assert result["recall@2"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert result["precision@2"] == pytest.approx((1 + 0 + 0.5) / 3)
    ndcg_u2 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert ndcg_u2 == pytest.approx(0.386853, abs=1e-6)
    assert result["ndcg@2"] == pytest.approx((1 + 0 + ndcg_u2) / 3)
    # AUC, over candidates only (train items never count as negatives):
    # u0 positives {2:5, 5:6} vs negatives {1:1, 3:4, 4:3}: 6 of 6 pairs right → 1
    # u1 positive {3:1} vs {0:1 tie → 0.5, 2:3 ✗, 4:3 ✗, 5:0 ✓} → 1.5/4 = 0.375
    # u2 positives {4:8, 5:7} vs {2:9, 3:2}: 4>3, 5>3 right, both lose to 2 → 2/4 = 0.5
    assert result["auc"] == pytest.approx((1 + 0.375 + 0.5) / 3)
    # top-2 lists [5, 2], [2, 4], [2, 4] → {2, 4, 5}: 3 of 6 catalogue items
    assert result["coverage@2"] == pytest.approx(0.5)
    # cold item 5: a test positive of u0 (found) and u2 (missed); u1 has none and does not count
    assert result["cold_recall@2"] == pytest.approx(0.5)
    assert (result["users"], result["cold_users"]) == (3, 2)


def test_ndcg_ideal_is_capped_at_k_hits():
    # one user, 4 test positives, k = 2: a perfect top-2 has NDCG 1 but recall 2/4
    train, test = data({0: [0]}, 1, 6), data({0: [1, 2, 3, 4]}, 1, 6)
    ranker = FixedScores([[0, 9, 8, 1, 1, 5]]).fit(train)
    result = evaluate(ranker, SimpleNamespace(train=train, test=test), k=2)
    assert result["ndcg@2"] == pytest.approx(1.0) and result["recall@2"] == pytest.approx(0.5)
    assert result["precision@2"] == pytest.approx(1.0)


def test_no_cold_positives_gives_nan_cold_recall():
    test = data({0: [2], 1: [3]})
    result = evaluate(FixedScores(SCORES).fit(TRAIN), SimpleNamespace(train=TRAIN, test=test), k=2)
    assert np.isnan(result["cold_recall@2"]) and result["cold_users"] == 0


def test_batching_does_not_change_anything():
    rng = np.random.default_rng(0)
    picks = {u: rng.choice(30, 8, replace=False) for u in range(40)}
    train = data({u: list(p[:5]) for u, p in picks.items()}, 40, 30)
    test = data({u: list(p[5:]) for u, p in picks.items() if u % 2 == 0}, 40, 30)
    ranker = FixedScores(rng.integers(0, 4, (40, 30))).fit(train)   # many ties
    split = SimpleNamespace(train=train, test=test)
    one, many = evaluate(ranker, split, batch_users=1), evaluate(ranker, split, batch_users=256)
    assert one.keys() == many.keys()
    for key in one:
        assert one[key] == pytest.approx(many[key], nan_ok=True)


def test_top_k_matches_a_stable_full_sort_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(50):
        scores = rng.integers(0, 4, (5, 25)).astype(float)
        scores[rng.random(scores.shape) < 0.2] = -np.inf
        k = int(rng.integers(1, 26))
        np.testing.assert_array_equal(_top_k(scores, k), np.argsort(-scores, axis=1, kind="stable")[:, :k])


def test_auc_matches_counting_pairs():
    rng = np.random.default_rng(2)
    train = data({u: list(rng.choice(20, 4, replace=False)) for u in range(6)}, 6, 20)
    test_pairs = {u: [i for i in rng.choice(20, 5, replace=False)
                      if i not in set(train.items[train.users == u])] for u in range(6)}
    test = data(test_pairs, 6, 20)
    ranker = FixedScores(rng.integers(0, 5, (6, 20))).fit(train)
    users = np.arange(6)
    scores = _masked_scores(ranker, users, train.matrix())
    fast = _auc(scores, test.matrix()[users], np.diff(train.matrix().indptr))
    for u in users:
        seen = set(train.items[train.users == u])
        pos = set(test_pairs[u])
        neg = [i for i in range(20) if i not in seen and i not in pos]
        s = ranker.scores[u]
        pairs = [1.0 if s[p] > s[n] else 0.5 if s[p] == s[n] else 0.0 for p in pos for n in neg]
        assert fast[u] == pytest.approx(np.mean(pairs))


def test_diversity_and_novelty_on_a_hand_computed_case():
    # 2 users, 4 items; image vectors: items 0 and 1 identical, 2 orthogonal to them, 3 opposite to 2
    vectors = np.array([[1, 0], [1, 0], [0, 1], [0, -1]], dtype=np.float32)
    train = data({0: [0], 1: [0, 1]}, 2, 4)
    train.item_features = vectors
    test = data({0: [1], 1: [2]}, 2, 4)
    ranker = FixedScores([[0, 9, 8, 1], [0, 0, 9, 8]]).fit(train)
    result = evaluate(ranker, SimpleNamespace(train=train, test=test), k=2)
    # u0's top 2 = [1, 2]: cosine 0 → diversity 1; u1's = [2, 3]: cosine -1 → diversity 2
    assert result["diversity@2"] == pytest.approx((1 + 2) / 2)
    # train users per item: 0 → 2, 1 → 1, 2 → 0, 3 → 0; p = (n + 1) / (2 users + 1)
    info = {1: -np.log2(2 / 3), 2: -np.log2(1 / 3), 3: -np.log2(1 / 3)}
    assert result["novelty@2"] == pytest.approx(((info[1] + info[2]) / 2 + (info[2] + info[3]) / 2) / 2)


def test_without_image_features_diversity_is_nan_and_the_old_keys_stay():
    result = evaluate(FixedScores(SCORES).fit(TRAIN), SimpleNamespace(train=TRAIN, test=TEST), k=2)
    assert np.isnan(result["diversity@2"]) and np.isfinite(result["novelty@2"])
    assert {"recall@2", "ndcg@2", "precision@2", "auc", "coverage@2", "cold_recall@2", "users",
            "cold_users"} <= result.keys() and "per_user" not in result


def test_per_user_scores_average_to_the_metrics():
    split = SimpleNamespace(train=TRAIN, test=TEST)
    result = evaluate(FixedScores(SCORES).fit(TRAIN), split, k=2, per_user=True, batch_users=2)
    users = result["per_user"]
    assert list(users.index) == [0, 1, 2] and list(users["train_positives"]) == [1, 1, 2]
    ndcg_u2 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    np.testing.assert_allclose(users["ndcg@2"], [1.0, 0.0, ndcg_u2])
    assert users["ndcg@2"].mean() == pytest.approx(result["ndcg@2"])
    assert users["recall@2"].mean() == pytest.approx(result["recall@2"])
    np.testing.assert_array_equal(users["cold_recall@2"].isna(), [False, True, False])   # u1: no cold item
    assert users["cold_recall@2"].mean() == pytest.approx(result["cold_recall@2"])
