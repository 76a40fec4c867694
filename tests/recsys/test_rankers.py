"""The ranker contract for every ranker in the zoo's registry, the zoo itself, and that the classic
learners learn (planted-structure data)."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from visrec_pipelines.recsys import zoo
from visrec_pipelines.recsys.base import Ranker, TrainData
from visrec_pipelines.recsys.iterative import IterativeRanker
from visrec_pipelines.recsys.metrics import evaluate
from visrec_pipelines.recsys.models import register
from visrec_pipelines.recsys.models.bpr import BPR
from visrec_pipelines.recsys.models.sampling import TripleSampler
from visrec_pipelines.recsys.models.vbpr import VBPR
from visrec_pipelines.recsys.split import Split

CLUSTERS, USERS_PER_CLUSTER, WARM_PER_CLUSTER, COLD_PER_CLUSTER, DIM = 4, 25, 16, 4, 16
RANKERS = zoo.rankers()
ITERATIVE = [name for name, cls in RANKERS.items() if issubclass(cls, IterativeRanker)]
VISUAL = [name for name, cls in RANKERS.items() if "image_features" in cls.needs]
NOT_FACTORISED = {"itemknn", "ease", "deep_mlp", "visual_content", "two_stage"}  # item–item, MLP, age, trees


def planted(seed: int = 0) -> tuple[TrainData, TrainData]:
    """Users like the items of their own cluster. Item features = the cluster's direction + noise.
    The last COLD_PER_CLUSTER items of each cluster never appear in train (cold) but do in test.
    Popularity is flat across clusters, so MostPop cannot know the cluster and personalised
    models can."""
    rng = np.random.default_rng(seed)
    per = WARM_PER_CLUSTER + COLD_PER_CLUSTER
    n_items, n_users = CLUSTERS * per, CLUSTERS * USERS_PER_CLUSTER
    centres = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0][:CLUSTERS]
    features = (np.repeat(centres, per, axis=0) + 0.3 * rng.normal(size=(n_items, DIM))).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    train, test = [], []
    for u in range(n_users):
        c = u // USERS_PER_CLUSTER
        warm = c * per + rng.permutation(WARM_PER_CLUSTER)
        cold = c * per + WARM_PER_CLUSTER + rng.choice(COLD_PER_CLUSTER, 2, replace=False)
        train += [(u, i) for i in warm[:8]]
        test += [(u, i) for i in (*warm[8:10], *cold)]

    def as_data(pairs):
        pairs = np.array(pairs)
        return TrainData(np.array([f"u{u}" for u in range(n_users)]),
                         np.array([f"i{i}" for i in range(n_items)]),
                         pairs[:, 0], pairs[:, 1], np.arange(len(pairs), dtype=float), features)
    return as_data(train), as_data(test)


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def fitted(data, small_ranker):
    train, _ = data
    return {name: small_ranker(name).fit(train) for name in RANKERS}


@pytest.fixture(scope="module")
def split(data):
    """Train, test, and a validation slice carved from train: each user's last train positive."""
    train, test = data                                          # rows grouped by user, in time order
    last = np.r_[train.users[1:] != train.users[:-1], True]
    validation = replace(train, users=train.users[last], items=train.items[last], timestamps=train.timestamps[last])
    return Split(train=train, validation=validation, test=test)


@pytest.mark.parametrize("name", RANKERS)
def test_contract(name, fitted, data, tmp_path):
    train, _ = data
    model = fitted[name]
    assert isinstance(model, Ranker) and model.name == name
    assert (model.seen != train.matrix()).nnz == 0
    users = np.arange(train.n_users)
    scores = model.score(users)
    assert scores.shape == (train.n_users, train.n_items) and np.isfinite(scores).all()
    seen = train.matrix().toarray() > 0
    for asked, k in ((np.array([0, 5, 99]), 10), (users, 20)):
        top = model.recommend(asked, k=k)
        assert top.shape == (len(asked), k)
        assert not np.take_along_axis(seen[asked], top, axis=1).any(), "a train positive was recommended"
        ranked = np.take_along_axis(scores[asked], top, axis=1)
        np.testing.assert_array_equal(np.sort(ranked, axis=1)[:, ::-1], ranked)        # best first
    assert (top[:, 0] == np.argmax(np.where(seen, -np.inf, scores), axis=1)).all()   # every user's best

    model.save(tmp_path / "model.pkl")
    np.testing.assert_array_equal(type(model).load(tmp_path / "model.pkl").score(users), scores)
    other = next(cls for cls in RANKERS.values() if not isinstance(model, cls))
    with pytest.raises(TypeError):
        other.load(tmp_path / "model.pkl")


@pytest.mark.parametrize("name", RANKERS)
def test_same_seed_same_model(name, fitted, data, small_ranker):
    train, _ = data
    users = np.arange(train.n_users)
    np.testing.assert_array_equal(small_ranker(name, seed=0).fit(train).score(users), fitted[name].score(users))


@pytest.mark.parametrize("name", ITERATIVE)
def test_same_seed_same_model_other_seed_other_model(name, data, small_ranker):
    users = np.arange(10)
    first, second = (small_ranker(name, seed=3, epochs=4).fit(data[0]).score(users) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, small_ranker(name, seed=4, epochs=4).fit(data[0]).score(users))


@pytest.mark.parametrize("name", RANKERS)
def test_vectors_give_the_scores_where_the_model_is_factorised(name, fitted, data):
    model, train = fitted[name], data[0]
    user_vectors, item_vectors = model.user_vectors(), model.item_vectors()
    if name in NOT_FACTORISED:
        assert user_vectors is None and item_vectors is None
        return
    assert user_vectors.shape[1] == item_vectors.shape[1]
    assert len(user_vectors) == train.n_users and len(item_vectors) == train.n_items
    users = np.arange(train.n_users)
    np.testing.assert_allclose(user_vectors @ item_vectors.T, model.score(users), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["bpr", "itemknn", "ease"])
def test_collaborative_models_beat_mostpop_on_planted_structure(name, fitted, data):
    split = SimpleNamespace(train=data[0], test=data[1])
    learned, pop = evaluate(fitted[name], split)["ndcg@20"], evaluate(fitted["mostpop"], split)["ndcg@20"]
    assert learned > pop + 0.2, (learned, pop)


@pytest.mark.parametrize("name", ["visual_knn", "vbpr"])
def test_visual_models_find_cold_items_that_match_the_users_taste(name, fitted, data):
    result = evaluate(fitted[name], SimpleNamespace(train=data[0], test=data[1]))
    # each user's 2 cold positives hide among 16 cold items; the 10 in-cluster candidates + the
    # cluster's other 2 cold items fit in the top 20 only if the image features are used
    assert result["cold_recall@20"] > 0.8, result
    assert evaluate(fitted["bpr"], SimpleNamespace(train=data[0], test=data[1]))["cold_recall@20"] < 0.5


@pytest.mark.parametrize("negatives, batch_size", [("warm", 256), ("all", 256), ("all", 8)])
def test_vbpr_cold_items_keep_zero_latent_factors(negatives, batch_size, data):
    # batch 8: the per-batch distinct-items projection; 256: the whole table at once
    model = VBPR(factors=8, visual_factors=8, epochs=10 if batch_size == 8 else 30, batch_size=batch_size,
                 lr=0.02, negatives=negatives, patience=None).fit(data[0])
    cold = np.bincount(data[0].items, minlength=data[0].n_items) == 0
    assert not model.gamma_item[cold].any() and not model.beta_item[cold].any()
    assert model.gamma_item[~cold].any()
    result = evaluate(model, SimpleNamespace(train=data[0], test=data[1]))
    assert result["ndcg@20"] > 0.5 and result["cold_recall@20"] > 0.5, result


def test_early_stopping_on_validation_records_the_best_epoch(data):
    train, test = data
    model = BPR(factors=8, epochs=40, eval_every=5, patience=2).fit(train, test)
    assert model.history and model.best_epoch == max(model.history, key=lambda h: h[1])[0]


@pytest.mark.parametrize("bitmap_limit", [1 << 28, 0])      # dense bitmap, then sorted keys
def test_sampler_never_returns_a_users_positive_as_negative(data, bitmap_limit, monkeypatch):
    monkeypatch.setattr("visrec_pipelines.recsys.models.sampling.BITMAP_LIMIT", bitmap_limit)
    train, _ = data
    users, positives, negatives = TripleSampler(train, np.random.default_rng(0)).epoch(5000)
    seen = train.matrix().toarray() > 0
    assert seen[users, positives].all() and not seen[users, negatives].any()
    pool = np.arange(0, train.n_items, 2)
    _, _, negatives = TripleSampler(train, np.random.default_rng(0), negative_pool=pool).epoch(2000)
    assert np.isin(negatives, pool).all()


def test_zoo_lists_every_ranker_under_its_name_in_a_fixed_order():
    assert zoo.available() == list(RANKERS) and all(cls.name == name for name, cls in RANKERS.items())
    known = ["mostpop", "itemknn", "ease", "visual_knn", "bpr", "vbpr", "deep_mlp", "sasrec", "gru4rec",
             "visual_content", "amr", "two_stage"]
    assert [name for name in zoo.available() if name in known] == known    # new rankers may go anywhere
    assert BPR.tuning == {"reg": [0.003, 0.01, 0.03]} and RANKERS["amr"].tuning == {"reg": [0.01, 0.1]}


def test_the_default_zoo_leaves_out_the_rankers_not_worth_their_cost():
    """Optional rankers stay trainable by name (and tested here), but the pipeline trains only the
    default zoo: names() keeps the listing order of available()."""
    optional = {name for name, cls in RANKERS.items() if not cls.default_zoo}
    assert {"gru4rec", "sasrec"} <= optional and "two_stage" not in optional and "ease" not in optional
    assert zoo.names() == [name for name in zoo.available() if name not in optional]


def test_two_rankers_cannot_share_a_name():
    impostor = type("Impostor", (BPR,), {"__module__": __name__})           # name "bpr", another class
    with pytest.raises(ValueError, match="two rankers named 'bpr'"):
        register(order=1)(impostor)
    assert zoo.rankers()["bpr"] is BPR


def test_zoo_tunes_on_the_validation_slice_then_refits_on_all_of_train(split):
    trained = zoo.train("bpr", split, seed=1, progress=True, factors=8, epochs=12, eval_every=3)
    params = trained.params
    assert trained.name == "bpr" and params["reg"] in BPR.tuning["reg"] and "progress" not in params
    assert params["epochs"] == params["best_epoch"] == trained.ranker.epochs and trained.ranker.progress
    assert (trained.ranker.seen != split.train.matrix()).nnz == 0           # refit on all of train
    fixed = zoo.train("bpr", split, seed=1, refit=False, factors=8, epochs=12, eval_every=3, reg=0.01)
    assert fixed.params["reg"] == 0.01 and fixed.params["epochs"] == 12     # a fixed setting is not searched
    assert fixed.ranker.history and fixed.params["best_epoch"] == fixed.ranker.best_epoch
    assert (fixed.ranker.seen != split.tune_data().matrix()).nnz == 0       # the tuned model, on tune_data
    once = zoo.train("ease", split, l2=10.0)                                # nothing to stop early: fit once
    assert once.params == {"seed": 0, "l2": 10.0} and (once.ranker.seen != split.train.matrix()).nnz == 0
    searched = zoo.train("ease", split)                   # a grid without epochs: chosen on validation
    assert searched.params["l2"] in RANKERS["ease"].tuning["l2"]
    assert (searched.ranker.seen != split.train.matrix()).nnz == 0


def test_a_rankers_whole_training_keeps_to_one_budget(split):
    """Grid and refit share one budget: spent, the grid stops after its first candidate and every
    run stops after its first epoch, and the model says so; with room, nothing is cut."""
    roomy = zoo.train("bpr", split, factors=8, epochs=6, eval_every=3)
    assert "grid_cut" not in roomy.params and not roomy.ranker.stopped_by_budget
    hurried = zoo.train("bpr", split, budget_s=1e-9, factors=8, epochs=6, eval_every=3)
    assert hurried.params["grid_cut"] and hurried.params["reg"] == BPR.tuning["reg"][0]
    assert hurried.ranker.stopped_by_budget and hurried.params["best_epoch"] == 1
    assert (hurried.ranker.seen != split.train.matrix()).nnz == 0           # still refit on all of train
    ease = zoo.train("ease", split, budget_s=1e-9)                          # a grid without epochs, too
    assert ease.params["grid_cut"] and ease.params["l2"] == RANKERS["ease"].tuning["l2"][0]
    assert "grid_cut" not in zoo.train("ease", split, budget_s=None).params


def test_a_ranker_whose_fits_grow_too_fast_skips_its_grid_above_its_event_limit(split, monkeypatch):
    """ItemKNN above ``grid_max_events`` fits its defaults once, and says so; below it, it searches."""
    itemknn = RANKERS["itemknn"]
    searched = zoo.train("itemknn", split)
    assert "grid_skipped" not in searched.params and searched.params["neighbours"] in itemknn.tuning["neighbours"]
    monkeypatch.setattr(itemknn, "grid_max_events", len(split.train.users) - 1)
    skipped = zoo.train("itemknn", split)
    assert skipped.params == {"seed": 0, "grid_skipped": True}
    assert skipped.ranker.neighbours == itemknn().neighbours and (skipped.ranker.seen != split.train.matrix()).nnz == 0


@pytest.mark.parametrize("name", VISUAL)
def test_zoo_refuses_a_split_without_the_image_features_a_ranker_needs(name, split):
    blind = Split(*(replace(part, item_features=None) for part in (split.train, split.validation, split.test)))
    with pytest.raises(ValueError, match=f"{name} needs image features"):
        zoo.train(name, blind)
