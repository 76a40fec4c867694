"""Rankers switch to their scalable form by themselves when a catalogue outgrows the exact one."""
import numpy as np
import scipy.sparse as sp

from visrec_pipelines.recsys.base import TrainData
from visrec_pipelines.recsys.models.ease import EASE


def random_shop(n_users=300, n_items=120, n_events=4000, seed=0) -> TrainData:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1)
    items = rng.choice(n_items, size=n_events, p=popularity / popularity.sum())
    return TrainData(np.array([f"u{u}" for u in range(n_users)]), np.array([f"i{i}" for i in range(n_items)]),
                     rng.integers(n_users, size=n_events), items, np.arange(n_events, dtype=float))


def test_ease_above_max_items_is_ease_over_the_most_popular_items():
    data = random_shop()
    positives = np.bincount(data.items, minlength=data.n_items)
    warm = np.flatnonzero(positives)
    capped = EASE(l2=20.0, max_items=40).fit(data)
    assert capped.warm_items_seen == len(warm) > 40 and len(capped.warm) == 40
    assert set(capped.warm) == set(warm[np.argsort(-positives[warm], kind="stable")[:40]])  # the 40 most popular

    users = np.arange(50)
    scores = capped.score(users)
    outside = np.setdiff1d(np.arange(data.n_items), capped.warm)
    assert np.all(scores[:, outside] == 0) and np.abs(scores[:, capped.warm]).sum() > 0

    # over its items it is exactly EASE on the data of those items
    keep = np.isin(data.items, capped.warm)
    subset = TrainData(data.user_ids, data.item_ids, data.users[keep], data.items[keep], data.timestamps[keep])
    exact = EASE(l2=20.0, max_items=10_000).fit(subset)
    np.testing.assert_allclose(scores, exact.score(users), rtol=1e-4, atol=1e-5)


def test_ease_within_max_items_is_unchanged():
    data = random_shop()
    full = EASE(l2=20.0).fit(data)
    assert len(full.warm) == full.warm_items_seen == len(np.unique(data.items))


def test_evaluation_of_a_large_shop_averages_over_a_fixed_sample_of_users():
    from types import SimpleNamespace

    from visrec_pipelines.recsys.metrics import evaluate
    from visrec_pipelines.recsys.models.mostpop import MostPop

    train, test = random_shop(seed=1), random_shop(seed=2)
    split = SimpleNamespace(train=train, test=test)
    model = MostPop().fit(train)
    everyone = evaluate(model, split, with_auc=False, per_user=True, max_users=None)
    sampled = evaluate(model, split, with_auc=False, per_user=True, max_users=100)
    again = evaluate(model, split, with_auc=False, per_user=True, max_users=100)
    assert everyone["users"] > 100 and sampled["users"] == 100
    assert sampled["per_user"].index.equals(again["per_user"].index)            # the same users every time
    assert set(sampled["per_user"].index) <= set(everyone["per_user"].index)
    per_user = everyone["per_user"].loc[sampled["per_user"].index, "ndcg@20"]
    np.testing.assert_allclose(sampled["ndcg@20"], per_user.mean())             # their own metrics, averaged


def test_the_auc_of_a_large_shop_is_averaged_over_a_fixed_subset_of_users(monkeypatch):
    from types import SimpleNamespace

    from visrec_pipelines.recsys import metrics
    from visrec_pipelines.recsys.models.mostpop import MostPop

    train, test = random_shop(seed=1), random_shop(seed=2)
    split = SimpleNamespace(train=train, test=test)
    model = MostPop().fit(train)
    everyone = metrics.evaluate(model, split)
    monkeypatch.setattr(metrics, "MAX_AUC_USERS", 40)
    subset = metrics.evaluate(model, split)
    assert everyone["auc_users"] == everyone["users"] > 40 and subset["auc_users"] == 40
    assert subset["ndcg@20"] == everyone["ndcg@20"] and 0.3 < subset["auc"] < 1.0
    assert subset["auc"] == metrics.evaluate(model, split)["auc"]                  # the same users each time


def test_a_training_run_stops_when_its_time_budget_is_spent():
    from visrec_pipelines.recsys.models.bpr import BPR

    data = random_shop()
    unlimited = BPR(factors=4, epochs=6, patience=None).fit(data)
    assert not unlimited.stopped_by_budget and unlimited.best_epoch == 6
    hurried = BPR(factors=4, epochs=6, patience=None)
    hurried.train_budget_s = 0.0                       # spent by the first epoch
    hurried.fit(data)
    assert hurried.stopped_by_budget and hurried.best_epoch == 1
    assert np.isfinite(hurried.score(np.arange(5))).all()


def test_itemknn_keeps_each_items_k_most_similar_items_among_those_it_shares_users_with():
    from visrec_pipelines.recsys.models.itemknn import ItemKNN

    data = random_shop(n_users=200, n_items=150, n_events=3000, seed=3)
    x = data.matrix().toarray()
    norms = np.sqrt(x.sum(axis=0))
    dense = (x.T @ x) / (np.outer(norms, norms) + 1e-12)          # the textbook cosine, every pair
    np.fill_diagonal(dense, 0.0)
    k = 12
    model = ItemKNN(neighbours=k, block=32).fit(data)              # several blocks
    kept = model.neighbour_matrix.toarray()
    for item in range(data.n_items):
        positive = np.sort(dense[item][dense[item] > 0])[::-1][:k]
        mine = np.sort(kept[item][kept[item] > 0])[::-1]
        np.testing.assert_allclose(mine, positive, rtol=1e-5)      # the k best (ties: any of equal value)
        if len(positive):                                           # and kept where those values are
            assert set(np.flatnonzero(kept[item])) <= set(np.flatnonzero(dense[item] >= positive[-1] - 1e-6))
    assert model.neighbour_matrix.diagonal().sum() == 0
    users = np.arange(20)
    np.testing.assert_allclose(model.score(users), x[users] @ kept.T, rtol=1e-5)


def test_the_visual_signals_are_the_cosines_to_the_recent_items():
    from visrec_pipelines.recsys.candidates import _visual

    rng = np.random.default_rng(0)
    visual = rng.standard_normal((300, 16)).astype(np.float32)
    visual /= np.linalg.norm(visual, axis=1, keepdims=True)
    recent = rng.integers(0, 300, size=(7, 4))
    recent[2, 1:] = -1                                              # a user with one recent item
    recent[5] = -1                                                  # and one with none
    seen = sp.csr_matrix((np.ones(recent.size), (np.repeat(np.arange(7), 4), np.maximum(recent, 0).ravel())),
                         shape=(7, 300))
    out = _visual(visual, recent, seen)
    for user in range(7):
        mine = recent[user][recent[user] >= 0]
        best = (visual[mine] @ visual.T).max(axis=0) if len(mine) else np.zeros(300)
        np.testing.assert_allclose(out["visual_max"][user], best, atol=1e-6)
        latest = visual[mine[0]] @ visual.T if len(mine) else np.zeros(300)
        np.testing.assert_allclose(out["visual_latest"][user], latest, atol=1e-6)
