"""The two-stage recommender on planted data: new items are found through their content, a signal
that carries nothing is left aside, picks come with their reasons; SASRec learns an order. (The
ranker contract, determinism and save/load are checked for every registered ranker in
test_rankers.)"""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from visrec_pipelines.recsys.base import TrainData
from visrec_pipelines.recsys.bundle import RankerBundle
from visrec_pipelines.recsys.metrics import evaluate
from visrec_pipelines.recsys.models.mostpop import MostPop
from visrec_pipelines.recsys.models.sasrec import SASRec
from visrec_pipelines.recsys.models.two_stage import TwoStageRanker

DAY = 86400.0
CLUSTERS, USERS_PER_CLUSTER, PERIODS, NEW_PER_PERIOD = 4, 20, 10, 6
CONTENT = ("content", "content_cf", "cold")
VISUAL = ("visual_max", "visual_latest", "visual_profile")
SMALL = dict(max_trees=40, patience=5)


def ids(prefix: str, n: int) -> np.ndarray:
    return np.array([f"{prefix}{k}" for k in range(n)])


def new_arrivals_shop(seed: int = 0, noise_images: bool = True) -> SimpleNamespace:
    """Each cluster (a label: its only content) gets NEW_PER_PERIOD new items every period; each
    period every user takes one or two of their own cluster's items, nearly always a new arrival.
    The last two periods are test, so test positives are items nobody had taken in train (cold),
    and only the label tells which of the 24 new items are the user's. Images (when given) are
    noise: they say nothing."""
    rng = np.random.default_rng(seed)
    n_items = CLUSTERS * PERIODS * NEW_PER_PERIOD
    cluster = np.arange(n_items) % CLUSTERS
    period = np.arange(n_items) // (CLUSTERS * NEW_PER_PERIOD)
    attributes = sp.csr_matrix((np.ones(n_items, np.float32), (np.arange(n_items), cluster)),
                               shape=(n_items, CLUSTERS))
    features = rng.normal(size=(n_items, 8)).astype(np.float32) if noise_images else None
    rows = {"train": [], "test": []}
    for u in range(CLUSTERS * USERS_PER_CLUSTER):
        c = u % CLUSTERS
        for p in range(PERIODS):
            new = np.flatnonzero((cluster == c) & (period == p))
            for pick in rng.choice(new, rng.integers(1, 3), replace=False):
                rows["train" if p < PERIODS - 2 else "test"].append((u, pick, p * DAY + rng.random() * DAY))

    def part(name):
        users, items, times = (np.array(column) for column in zip(*rows[name]))
        return TrainData(ids("u", CLUSTERS * USERS_PER_CLUSTER), ids("i", n_items), users.astype(int),
                         items.astype(int), times, features, attributes, period * DAY)
    return SimpleNamespace(train=part("train"), test=part("test"))


@pytest.fixture(scope="module")
def shop():
    return new_arrivals_shop()


@pytest.fixture(scope="module")
def model(shop):
    return TwoStageRanker(**SMALL).fit(shop.train)


def test_new_items_come_in_through_the_content_sources(shop, model):
    result, pop = evaluate(model, shop), evaluate(MostPop().fit(shop.train), shop)
    assert result["cold_recall@20"] > 0.8 and pop["cold_recall@20"] == 0.0, result
    without_content = evaluate(TwoStageRanker(**SMALL, drop_signals=CONTENT).fit(shop.train), shop)
    # newness alone cannot tell the user's 12 new items from the other clusters' 36
    assert without_content["cold_recall@20"] < result["cold_recall@20"] - 0.2, without_content
    top = model.recommend(np.array([0]), k=5)[0]
    reasons = model.explain(0, top)
    assert all(r["candidate"] and set(r["nominated_by"]) & {"cold", "content", "content_cf"} for r in reasons)


def test_a_signal_that_carries_nothing_is_left_aside(shop, model):
    """The images are noise here: the learned ranker gives them (almost) no weight, and taking
    them away changes the ranking quality by no more than noise."""
    shares = model.signal_importance()
    assert shares.get("visual", 0.0) < 0.1, shares
    # with or without the look features: whichever scores better across the CV folds of users
    chosen = "without " + "/".join(VISUAL) if model.hidden else "all signals"
    assert len(model.cv_ndcg) == 2 and model.cv_ndcg[chosen] == max(model.cv_ndcg.values())
    assert not set(model.hidden) & set(model.feature_names)
    blind = evaluate(TwoStageRanker(**SMALL, drop_signals=VISUAL).fit(shop.train), shop)
    assert abs(evaluate(model, shop)["ndcg@20"] - blind["ndcg@20"]) < 0.05


def test_explanations_name_sources_contributions_and_a_look_alike(shop, model):
    user = 3
    reasons = model.explain(user, k=10)
    assert [r["item"] for r in reasons] == list(model.recommend(np.array([user]), k=10)[0])
    recent = set(model.sources.history.recent[user]) - {-1}
    for r in reasons:
        assert all(0 <= rank < model.nominate[name] for name, rank in r["nominated_by"].items())
        assert r["pushed_by"] and set(r["pushed_by"]) <= {"co-occurrence", "sequence", "factors", "visual",
                                                         "content", "time", "popularity", "user"}
        assert r["look_alike"] in recent and -1.0 <= r["look_alike_similarity"] <= 1.0
    bundle = RankerBundle.from_training(model, shop.train)
    table = bundle.explain("u3", k=10)
    assert list(table["item_id"]) == [shop.train.item_ids[r["item"]] for r in reasons]
    assert table["look_alike_item_id"].isin(shop.train.item_ids).all()
    assert bundle.explain("stranger") is None
    assert RankerBundle.from_training(MostPop().fit(shop.train), shop.train).explain("u3") is None


def test_a_served_users_reasons_match_a_fresh_models_whatever_was_asked_before(shop, model):
    """Serving asks for a user's scores, then why for the few items shown: the pairs are kept
    from one call to the next (one user at a time) and the contributions are computed for the
    asked items only; neither may change an answer."""
    import pickle

    fresh = pickle.loads(pickle.dumps(model))
    assert "_last_pairs" not in fresh.__dict__            # the memo is not part of a saved model
    everything = fresh.explain(5, np.arange(shop.train.n_items))
    by_item = {r["item"]: r for r in everything}
    model.score(np.array([4]))                             # another user's pairs in the slot
    shown = model.recommend(np.array([5]), k=10)[0]
    assert np.array_equal(model.score(np.array([5])), fresh.score(np.array([5])))
    for r in model.explain(5, shown):
        expected = by_item[r["item"]]
        assert r["nominated_by"] == expected["nominated_by"] and r["look_alike"] == expected["look_alike"]
        assert r["pushed_by"].keys() == expected["pushed_by"].keys()
        assert np.allclose(list(r["pushed_by"].values()), list(expected["pushed_by"].values()), atol=1e-5)
    assert any(r["pushed_by"] for r in everything) and not all(r["candidate"] for r in everything)


def test_it_learns_from_the_validation_slice_it_is_handed(shop):
    """Handed the protocol's validation slice (a subset of train), it learns from exactly that;
    either way it serves from all of train."""
    train = shop.train
    last = train.timestamps >= (PERIODS - 3) * DAY
    validation = replace(train, users=train.users[last], items=train.items[last], timestamps=train.timestamps[last])
    fitted = TwoStageRanker(**SMALL, label_slices=1).fit(train, validation)
    assert (fitted.seen != train.matrix()).nnz == 0
    assert (fitted.sources.history.seen != train.matrix()).nnz == 0
    assert evaluate(fitted, shop)["ndcg@20"] > 0.3


def test_without_images_or_content_it_still_ranks(shop):
    plain = replace(shop.train, item_features=None, item_attributes=None)
    model = TwoStageRanker(**SMALL).fit(plain)
    scores = model.score(np.arange(plain.n_users))
    assert np.isfinite(scores).all() and model.explain(0, k=3)[0]["look_alike"] is None


def test_sasrec_learns_what_comes_next():
    """Items come in chains A_k → B_k → C_k; each history ends inside a chain (on its A or its B),
    and the next link is the answer: only the order tells it (every item is equally popular)."""
    rng = np.random.default_rng(0)
    users, items, answers = [], [], []
    for u in range(200):
        chains = rng.choice(30, rng.integers(3, 6), replace=False)
        cut = rng.integers(1, 3)
        sequence = [3 * k + j for k in chains[:-1] for j in range(3)] + [3 * chains[-1] + j for j in range(cut)]
        users += [u] * len(sequence)
        items += sequence
        answers.append(3 * chains[-1] + cut)
    train = TrainData(ids("u", 200), ids("i", 90), np.array(users), np.array(items), np.arange(len(users), dtype=float))
    model = SASRec(dim=32, max_len=16, layers=1, epochs=40, batch_size=64, lr=1e-2, patience=None).fit(train)
    hit_rate = (model.recommend(np.arange(200), k=1)[:, 0] == np.array(answers)).mean()
    pop_rate = (MostPop().fit(train).recommend(np.arange(200), k=1)[:, 0] == np.array(answers)).mean()
    assert hit_rate > 0.8 and pop_rate < 0.1, (hit_rate, pop_rate)


def test_a_large_catalogue_nominates_and_ranks_without_sorting_whole_rows():
    """Above EXACT_RANK_ITEMS a row is not sorted whole: the nominations and the ranks an
    explanation reads (the head) are exact, deeper ranks estimated well inside LightGBM's bins."""
    from visrec_pipelines.recsys.models import two_stage

    rng = np.random.default_rng(3)
    n_rows, n_items = 6, 60_000
    values = rng.standard_normal((n_rows, n_items)).astype(np.float32)
    values[:, rng.random(n_items) < 0.3] = 0.0                 # a sparse signal's many ties
    values[1, rng.random(n_items) < 0.9] = -np.inf             # a source that scores few items
    values[2, :] = np.nan                                       # a source with nothing for this user
    values[3, rng.random(n_items) < 0.9995] = np.nan            # fewer scored items than it nominates
    values[4, rng.random(n_items) < 0.9995] = -np.inf           # ... or items it rules out (cold, newness)
    seen = rng.random((n_rows, n_items)) < 0.001
    masked = two_stage._masked(values, seen)
    heads = two_stage._Heads(masked)

    chosen, expected = np.zeros(seen.shape, bool), np.zeros(seen.shape, bool)
    heads.mark_top(chosen, 100)
    two_stage._mark_top(expected, np.where(seen, -np.inf, values), 100)
    assert np.array_equal(chosen, expected)

    rows = np.repeat(np.arange(n_rows), 300)
    items = np.concatenate([np.sort(rng.choice(np.flatnonzero(~seen[r]), 300, replace=False))
                            for r in range(n_rows)])
    exact = two_stage._ranks_of(values, seen, rows, items)
    assert np.array_equal(exact, (masked[rows] > masked[rows, items][:, None]).sum(1))
    got = heads.ranks(rows, items)
    head = exact < 1_000
    assert head.sum() > 300 and np.array_equal(got[head], exact[head])
    error = np.abs(np.log2(2 + got) - np.log2(2 + exact))
    assert np.median(error) < 0.02 and error.max() < 0.25         # a bin of max_bin 63 is ~0.25


def test_scoring_and_explaining_many_users_at_once_says_what_the_single_calls_say(shop, model):
    users = np.arange(0, 40, 3)
    scores, together = model.score_and_explain(users, 8)
    assert np.allclose(scores, model.score(users))
    for user, entries in zip(users, together):
        top = model.recommend(np.array([user]), k=8)[0]
        alone = model.explain(int(user), top)
        assert [e["item"] for e in entries] == list(top)
        for a, b in zip(entries, alone):
            assert a["nominated_by"] == b["nominated_by"] and a["look_alike"] == b["look_alike"]
            assert a["pushed_by"].keys() == b["pushed_by"].keys()
            assert np.allclose(list(a["pushed_by"].values()), list(b["pushed_by"].values()), atol=1e-4)


def test_the_candidate_floor_tells_which_items_no_source_found(shop, model):
    """Serving skips ``explain`` (a rebuild of the user's candidates) for items scored below the
    floor, saying "found by no source": that must be what ``explain`` says of them."""
    for user in range(0, 40, 7):
        scores = model.score(np.array([user]))[0]
        below, above = np.flatnonzero(scores < model.CANDIDATE_FLOOR), np.flatnonzero(scores >= model.CANDIDATE_FLOOR)
        assert len(below) and len(above)
        for entry in model.explain(user, np.concatenate([below[:15], above[:15]])):
            candidate = scores[entry["item"]] >= model.CANDIDATE_FLOOR
            assert entry["candidate"] == candidate
            assert candidate or (entry["nominated_by"] == {} and entry["pushed_by"] == {})


def test_kept_pairs_explain_any_item_later_without_building_the_candidates_again(shop, model, monkeypatch):
    """Serving keeps the prefilled users' candidate pairs (within a budget): a later ``explain`` of
    any of their items says what a fresh build says, without one; beyond the budget nothing is kept,
    and the pickle carries none."""
    import pickle

    users = np.arange(0, 12)
    fresh = {int(u): model.explain(int(u), np.arange(0, 60, 3)) for u in users}
    one_user = model._batch_pairs(model.sources, np.array([0]))[0]
    model.keep_pairs(int(6.5 * one_user.nbytes))                       # room for about six users
    model.score_and_explain(users, 4)
    kept = {key[0] for key in model._kept_pairs["pairs"]}
    assert 3 <= len(kept) < len(users) and model._kept_pairs["used"] <= model._kept_pairs["budget"]
    assert "_kept_pairs" not in pickle.loads(pickle.dumps(model)).__dict__
    monkeypatch.setattr(model, "_batch_pairs", lambda *a: (_ for _ in ()).throw(AssertionError("rebuilt")))
    model._last_pairs = None
    for user in kept:
        assert model.explain(user, np.arange(0, 60, 3)) == fresh[user]
    del model._kept_pairs                                  # the module's other tests see a plain model
