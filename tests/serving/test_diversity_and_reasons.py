"""?diversity= re-ranks a user's best items for variety in looks (MMR over the image vectors), and a
two-stage champion says which source found each pick and what pushed it up."""
import numpy as np
import pytest
from fastapi.testclient import TestClient

from visrec_pipelines.recsys.metrics import intra_list_diversity


def list_diversity(shop, item_ids) -> float:
    rows = [shop.index.item_ids.tolist().index(i) for i in item_ids]
    return float(intra_list_diversity(shop.index.vectors[rows][None])[0])


def test_diversity_trades_score_for_variety_within_the_best_items(client, shop):
    user = shop.split.train.user_ids[0]
    plain = client.get(f"/recommendations/{user}", params={"k": 6}).json()
    assert plain["diversity"] == 0.0
    same = client.get(f"/recommendations/{user}", params={"k": 6, "diversity": 0}).json()
    assert [i["item_id"] for i in same["items"]] == [i["item_id"] for i in plain["items"]]
    varied = client.get(f"/recommendations/{user}", params={"k": 6, "diversity": 0.9}).json()
    ids = [i["item_id"] for i in varied["items"]]
    assert varied["diversity"] == 0.9 and len(ids) == len(set(ids)) == 6
    assert ids[0] == plain["items"][0]["item_id"]                 # the best item always leads
    pool = [i["item_id"] for i in client.get(f"/recommendations/{user}", params={"k": 30}).json()["items"]]
    assert set(ids) <= set(pool)                                  # chosen among the champion's best
    assert list_diversity(shop, ids) > list_diversity(shop, [i["item_id"] for i in plain["items"]])
    cold = client.get("/recommendations/someone-new", params={"k": 4, "diversity": 0.5}).json()
    assert cold["cold_start"] and len(cold["items"]) == 4


def test_diversity_outside_zero_to_one_is_a_422(client):
    for bad in ("-0.1", "1.5", "nan", "lots"):
        answer = client.get("/recommendations/u0001", params={"diversity": bad})
        assert answer.status_code == 422, bad
        assert answer.json()["detail"][0]["loc"] == ["query", "diversity"]
    documented = {p["name"]: p for p in
                  client.get("/openapi.json").json()["paths"]["/recommendations/{user_id}"]["get"]["parameters"]}
    assert documented["diversity"]["schema"] == {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.0}


def test_a_two_stage_champion_explains_its_picks(shop, app_factory):
    dataset = shop.dataset("two-stage")
    version = shop.register(dataset, "two_stage", max_trees=20, patience=3)
    with TestClient(app_factory(dataset)) as client:
        user = shop.split.train.user_ids[1]
        body = client.get(f"/recommendations/{user}", params={"k": 5}).json()
        assert body["ranker"] == "two_stage" and body["champion_version"] == version
        bundle = shop.registry(dataset).load_bundle(version)
        assert [i["item_id"] for i in body["items"]] == bundle.recommend([user], k=5)["item_id"].tolist()
        explained = bundle.explain(user, k=5).set_index("item_id")
        for item in body["items"]:
            because = item["because"]
            assert because["sources"] == explained.loc[item["item_id"], "nominated_by"]
            assert because["pushed_by"] and len(because["pushed_by"]) <= 4
            assert np.all(np.diff(np.abs(list(because["pushed_by"].values()))) <= 1e-9)   # largest first
        assert any(item["because"]["sources"] for item in body["items"])


@pytest.mark.parametrize("cached", [200, 4])
def test_a_two_stage_champions_users_are_prefilled_at_load_with_the_same_answers(shop, app_factory, monkeypatch,
                                                                                  cached):
    """A champion that scores one user at a time gets its known users' best items and reasons
    built at load, in batches; every answer is what the lazy path (nothing prefilled) gives, and a
    prefilled user's requests score nothing: with only 4 best items cached, tag filters are answered
    from the user's kept score row."""
    from visrec_pipelines.serving import queries

    monkeypatch.setattr(queries, "TOP_CACHED", cached)
    dataset = shop.dataset("two-stage")
    if shop.registry(dataset).current_champion() is None:
        shop.register(dataset, "two_stage", max_trees=20, patience=3)
    users = list(shop.split.train.user_ids[:12]) + ["someone-new"]
    answers, scored, fallbacks = {}, [], []
    for budget in (0.0, 600.0):
        app = app_factory(dataset, serving_prefill_seconds=budget)
        with TestClient(app) as client:
            state = app.state.manager.state
            report = client.get("/status").json()["champion"]["prefilled"]
            if budget:
                assert report["users"] == report["of"] == state.champion.n_users and report["seconds"] >= 0
                from visrec_pipelines.serving.queries import PREFILL_EXPLAINED
                explained = [len(c.explained) for c in state._prefilled.values()]
                assert sum(explained) >= 0.8 * min(PREFILL_EXPLAINED, cached) * len(explained)   # reasons came too
                state.champion.bundle.ranker.score = scored.append      # must not be called
                filtered_best = state._filtered_best
                state._filtered_best = lambda *a, real=filtered_best: fallbacks.append(a) or real(*a)
            else:
                assert report is None and not state._prefilled
            for user in users:
                for params in ({"k": 5}, {"k": 12, "diversity": 0.3}, {"k": 3, "tags": "red"},
                               {"k": 6, "tags": ["blue", "dotted"]}):
                    body = client.get(f"/recommendations/{user}", params=params).json()
                    answers.setdefault((user, str(params)), []).append(
                        [(i["item_id"], i["reason"], i["because"].get("sources"),
                          sorted(i["because"].get("pushed_by", {}))) for i in body["items"]])
            if budget:
                assert scored == [] and (cached > 100 or fallbacks)
                # every reason kept, including those said without a call (not a candidate), is explain's
                ranker = state.champion.bundle.ranker
                for user in users[:-1]:
                    row = state.champion.user_row(user)
                    kept = state._prefilled[row].explained
                    fresh = ranker.explain(row, np.asarray(list(kept)))
                    assert kept == {e["item"]: queries._reason_entry(e) for e in fresh}
    for key, (lazy, prefilled) in answers.items():
        assert lazy == prefilled, key


@pytest.mark.parametrize("ann_min_items", [30_000, 0])
def test_a_factorised_champions_users_are_prefilled_too_through_the_ivf_on_a_large_catalogue(
        shop, app_factory, ann_min_items):
    """BPR's users get their best items and the look-alikes of the first page at load (dense scores,
    or one IVF search per batch on a large catalogue: ann_min_items 0); answers equal the lazy
    path's, and a prefilled user's request scores and searches nothing."""
    from visrec_pipelines.serving.queries import PREFILL_EXPLAINED, UNKNOWN_TWIN

    dataset = shop.dataset("bpr-prefill")
    if shop.registry(dataset).current_champion() is None:
        shop.register(dataset, "bpr")
    users = list(shop.split.train.user_ids[:10])
    answers = {}
    for budget in (0.0, 600.0):
        app = app_factory(dataset, serving_prefill_seconds=budget, ann_min_items=ann_min_items)
        with TestClient(app) as client:
            state = app.state.manager.state
            assert (state.best_items is None) == (ann_min_items > 0)
            report = client.get("/status").json()["champion"]["prefilled"]
            if budget:
                assert report["users"] == report["of"] == state.champion.n_users
                first_pages = [c.twins[:PREFILL_EXPLAINED] for c in state._prefilled.values()]
                assert all(UNKNOWN_TWIN not in twins for twins in first_pages)
                state.champion.scores = state.champion.user_vectors = None           # must not be used
                if state.best_items is not None:
                    state.best_items.search = None
            for user in users:
                for params in ({"k": 5}, {"k": 6, "diversity": 0.3}, {"k": 20}):   # within the cached best
                    body = client.get(f"/recommendations/{user}", params=params).json()
                    answers.setdefault((user, str(params)), []).append(
                        [(i["item_id"], round(i["score"], 5), i["reason"]) for i in body["items"]])
    for key, (lazy, prefilled) in answers.items():
        assert lazy == prefilled, key


def test_diversity_finds_reasons_only_for_the_items_it_shows(shop, app_factory):
    """?diversity= picks k of 5k by rows and scores first: a two-stage champion's reasons (a model
    call each) are found for the k shown, not for the whole pool."""
    dataset = shop.dataset("two-stage")
    if shop.registry(dataset).current_champion() is None:
        shop.register(dataset, "two_stage", max_trees=20, patience=3)
    app = app_factory(dataset, serving_prefill_seconds=0)
    with TestClient(app) as client:
        user = shop.split.train.user_ids[2]
        body = client.get(f"/recommendations/{user}", params={"k": 4, "diversity": 0.5}).json()
        state = app.state.manager.state
        context = state._context(state.champion.user_row(user), user)
        assert len(body["items"]) == 4 and len(context.explained) == 4
        assert all(item["because"]["pushed_by"] or not item["because"]["sources"] for item in body["items"])
