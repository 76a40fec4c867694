"""The ranker contract for every model, and that the learners learn (planted-structure data)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from visrec_pipelines.recsys.base import Ranker, TrainData
from visrec_pipelines.recsys.metrics import evaluate
from visrec_pipelines.recsys.models.bpr import BPR
from visrec_pipelines.recsys.models.ease import EASE
from visrec_pipelines.recsys.models.itemknn import ItemKNN
from visrec_pipelines.recsys.models.mostpop import MostPop
from visrec_pipelines.recsys.models.sampling import TripleSampler
from visrec_pipelines.recsys.models.vbpr import VBPR
from visrec_pipelines.recsys.models.visual_knn import VisualKNN

CLUSTERS, USERS_PER_CLUSTER, WARM_PER_CLUSTER, COLD_PER_CLUSTER, DIM = 4, 25, 16, 4, 16


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


FACTORIES = {
    "mostpop": lambda seed=0: MostPop(seed=seed),
    "itemknn": lambda seed=0: ItemKNN(neighbours=10, seed=seed),
    "ease": lambda seed=0: EASE(l2=10.0, seed=seed),
    "visual_knn": lambda seed=0: VisualKNN(seed=seed),
    "bpr": lambda seed=0: BPR(factors=8, epochs=30, lr=0.05, patience=None, seed=seed),
    "vbpr": lambda seed=0: VBPR(factors=8, visual_factors=8, epochs=30, batch_size=256, lr=0.02,
                                patience=None, seed=seed),
}


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def fitted(data):
    train, _ = data
    return {name: make().fit(train) for name, make in FACTORIES.items()}


@pytest.mark.parametrize("name", FACTORIES)
def test_contract(name, fitted, data, tmp_path):
    train, _ = data
    model = fitted[name]
    assert isinstance(model, Ranker)
    assert (model.seen != train.matrix()).nnz == 0
    users = np.array([0, 5, 99])
    scores = model.score(users)
    assert scores.shape == (3, train.n_items) and np.isfinite(scores).all()
    top = model.recommend(users, k=10)
    assert top.shape == (3, 10)
    for row, u in zip(top, users):
        assert not set(row) & set(train.items[train.users == u])          # seen items excluded
        np.testing.assert_array_equal(np.sort(scores[list(users).index(u), row])[::-1],
                                      scores[list(users).index(u), row])  # best first
    model.save(tmp_path / "model.pkl")
    np.testing.assert_allclose(type(model).load(tmp_path / "model.pkl").score(users), scores)


@pytest.mark.parametrize("name", FACTORIES)
def test_same_seed_same_model(name, fitted, data):
    train, _ = data
    users = np.arange(train.n_users)
    np.testing.assert_array_equal(FACTORIES[name](seed=0).fit(train).score(users), fitted[name].score(users))


@pytest.mark.parametrize("name", FACTORIES)
def test_vectors_give_the_scores(name, fitted, data):
    model = fitted[name]
    user_vectors, item_vectors = model.user_vectors(), model.item_vectors()
    if user_vectors is None:
        assert name in ("itemknn", "ease")             # item–item models: not factorised
        return
    users = np.arange(data[0].n_users)
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
