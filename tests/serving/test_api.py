"""The read endpoints answer from the champion and the index, with reasons, filters and cold start."""
import numpy as np
import pytest
from fastapi.testclient import TestClient


def champion_bundle(shop, dataset: str = "demo"):
    registry = shop.registry(dataset)
    return registry.load_bundle(str(registry.current_champion().version))


def test_probes_before_and_after_loading(app_factory, shop):
    app = app_factory("demo", load=False)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        before = client.get("/readyz")
        assert before.status_code == 503
        assert client.get("/recommendations/u0001").status_code == 503   # not a 500 while loading
        app.state.manager.reload()
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["champion_version"] == str(shop.registry("demo").current_champion().version)
        assert ready.json()["index_version"] == "visrec_items_demo_test_1"
        assert client.get("/healthz").status_code == 200


def test_known_user_gets_the_champions_ranking_with_reasons(client, shop):
    bundle = champion_bundle(shop)
    user = shop.split.train.user_ids[0]
    body = client.get(f"/recommendations/{user}", params={"k": 5}).json()
    assert body["known_user"] and not body["cold_start"] and body["ranker"] == "bpr"
    expected = bundle.recommend([user], k=5)["item_id"].tolist()
    assert [i["item_id"] for i in body["items"]] == expected
    history = {i["item_id"] for i in client.get(f"/users/{user}/history", params={"limit": 500}).json()["items"]}
    assert history and not history & set(expected)
    for item in body["items"]:
        assert item["title"] and item["tags"] and item["image_url"] == f"/images/{item['item_id']}"
        twin = item["because"]["looks_like"]
        assert twin is not None and twin["item_id"] in history
        if twin["similarity"] >= 0.5:
            assert f"looks like “{twin['title']}” you liked" in item["reason"]
        assert set(item["because"]["shared_tags"]) <= set(item["tags"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_tag_filter_keeps_items_with_all_tags(client, shop):
    user = shop.split.train.user_ids[1]
    for tags in (["red"], ["shoe", "red"]):
        body = client.get(f"/recommendations/{user}", params={"k": 20, "tags": tags}).json()
        assert body["tags"] == tags
        assert all(set(tags) <= set(i["tags"]) for i in body["items"])
    comma = client.get(f"/recommendations/{user}", params={"k": 20, "tags": "shoe,red"}).json()
    both = client.get(f"/recommendations/{user}", params=[("k", 20), ("tags", "shoe"), ("tags", "red")]).json()
    assert [i["item_id"] for i in comma["items"]] == [i["item_id"] for i in both["items"]]
    unfiltered = client.get(f"/recommendations/{user}", params={"k": 48}).json()["items"]
    red = [i["item_id"] for i in unfiltered if "red" in i["tags"]]
    filtered = client.get(f"/recommendations/{user}", params={"k": 48, "tags": "red"}).json()["items"]
    assert [i["item_id"] for i in filtered] == red          # same ranking, restricted
    assert client.get(f"/recommendations/{user}", params={"tags": "no-such-tag"}).json()["items"] == []


def test_unknown_user_gets_popular_and_diverse_items(client, shop):
    body = client.get("/recommendations/someone-new", params={"k": 6}).json()
    assert body["cold_start"] and not body["known_user"] and len(body["items"]) == 6
    categories = [i["category"] for i in body["items"]]
    n_categories = shop.items()["category"].nunique()
    assert len(set(categories)) == min(6, n_categories)      # one per category before any repeats
    assert all(i["reason"].startswith("popular in ") for i in body["items"])
    popularity = np.bincount(shop.split.train.items, minlength=shop.split.train.n_items)
    by_id = dict(zip(shop.split.train.item_ids, popularity))
    assert body["items"][0]["item_id"] in {i for i, p in by_id.items() if p == popularity.max()}
    shoes = client.get("/recommendations/someone-new", params={"k": 3, "tags": "shoe"}).json()["items"]
    assert shoes and all("shoe" in i["tags"] for i in shoes)


def test_similar_items_are_exact_neighbours(client, shop):
    index = shop.index
    for item in ("i00003", "i00017"):
        body = client.get(f"/items/{item}/similar", params={"k": 5}).json()
        assert body["item"]["item_id"] == item and body["index_version"] == "visrec_items_demo_test_1"
        assert [i["item_id"] for i in body["items"]] == [n for n, _ in index.similar_items(item, k=5)]
        filtered = client.get(f"/items/{item}/similar", params={"k": 4, "tags": "blue"}).json()["items"]
        assert [i["item_id"] for i in filtered] == [n for n, _ in index.similar_items(item, k=4, tags=["blue"])]
        assert all("blue" in i["tags"] for i in filtered) and item not in {i["item_id"] for i in filtered}


def test_unknown_item_is_a_clear_404(client):
    missing = client.get("/items/no-such-item/similar")
    assert missing.status_code == 404 and "no-such-item" in missing.json()["detail"]
    assert "not in the catalogue" in missing.json()["detail"]
    assert client.get("/items/no-such-item").status_code == 404


def test_catalogue_endpoints(client, shop):
    users = client.get("/users", params={"limit": 5}).json()["users"]
    assert len(users) == 5 and users[0]["history"] >= users[-1]["history"]
    tags = client.get("/tags").json()["tags"]
    assert {"red", "shoe", "striped"} <= {t["tag"] for t in tags}
    item = client.get("/items/i00001").json()
    assert item["indexed"] and item["title"] == shop.items().set_index("item_id").loc["i00001", "title"]
    picture = client.get("/images/i00001", params={"size": 64})
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert picture.content[:2] == b"\xff\xd8"
    assert client.get("/images/i00001", params={"size": 4}).status_code == 422
    for bad in ("no-such-item", "..%2F..%2Fitems.csv", "%2Fetc%2Fpasswd"):
        assert client.get(f"/images/{bad}").status_code == 404


def test_docs_and_gallery_are_served(client):
    spec = client.get("/openapi.json").json()
    assert {"/recommendations/{user_id}", "/items/{item_id}/similar", "/search/image", "/events",
            "/healthz", "/readyz"} <= set(spec["paths"])
    assert "ScoredItem" in spec["components"]["schemas"]
    for path in ("/recommendations/{user_id}", "/items/{item_id}/similar"):   # parameters read by hand
        documented = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        assert documented["k"]["schema"]["maximum"] == 100 and documented["tags"]["schema"]["type"] == "array"
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "user-select" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_the_hot_routes_are_matched_first_by_plain_routes_and_answer_as_documented(client, monkeypatch):
    """/recommendations and /items/{id}/similar skip FastAPI's matching and dependency solving
    (plain Starlette routes ahead of its own); their errors keep the documented formats, other
    methods still get 405, and FastAPI's routes still document them (test_docs_and_gallery...)."""
    from fastapi.routing import APIRoute
    from starlette.routing import Route

    routes = client.app.router.routes
    assert {route.path for route in routes[:2]} == {"/recommendations/{user_id}", "/items/{item_id}/similar"}
    assert all(isinstance(route, Route) and not isinstance(route, APIRoute) for route in routes[:2])
    served = []

    def counted(app):
        async def call(scope, receive, send):
            served.append(scope["path"])
            await app(scope, receive, send)
        return call

    for route in routes[:2]:
        monkeypatch.setattr(route, "app", counted(route.app))
    assert client.get("/items/i00001/similar", params={"k": 3}).status_code == 200
    assert client.get("/recommendations/u0001", params={"k": 3}).status_code == 200
    invalid = client.get("/items/i00001/similar", params={"k": 0})
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["query", "k"]
    missing = client.get("/items/no-such-item/similar")
    assert missing.status_code == 404 and "not in the catalogue" in missing.json()["detail"]
    assert served == ["/items/i00001/similar", "/recommendations/u0001", "/items/i00001/similar",
                      "/items/no-such-item/similar"]
    assert client.post("/items/i00001/similar").status_code == 405 and len(served) == 4


@pytest.mark.parametrize("ranker", ["itemknn", "mostpop"])
def test_other_rankers_serve_through_the_same_path(shop, app_factory, ranker):
    """ItemKNN has no user/item vectors (scored by ranker.score), MostPop has 1-d ones."""
    dataset = shop.dataset(f"other-{ranker}")
    version = shop.register(dataset, ranker)
    with TestClient(app_factory(dataset)) as client:
        user = shop.split.train.user_ids[2]
        body = client.get(f"/recommendations/{user}", params={"k": 5}).json()
        assert body["ranker"] == ranker and body["champion_version"] == version
        bundle = shop.registry(dataset).load_bundle(version)
        assert [i["item_id"] for i in body["items"]] == bundle.recommend([user], k=5)["item_id"].tolist()
        assert client.get("/status").json()["champion"]["fast_path"] == (ranker == "mostpop")


@pytest.mark.parametrize("cached", [200, 3])
def test_filtered_recommendations_match_brute_force(shop, app_factory, monkeypatch, cached):
    """Per-user cached best items, filtered, or (when the filter leaves too few) a full rescoring:
    both give exactly the champion's top k among the items carrying the tags."""
    from visrec_pipelines.serving import queries

    monkeypatch.setattr(queries, "TOP_CACHED", cached)
    bundle = champion_bundle(shop)
    tags_of = dict(zip(shop.index.item_ids.tolist(), shop.index.tags))
    with TestClient(app_factory("demo")) as client:
        for user in shop.split.train.user_ids[:4]:
            row = bundle.user_index(user)
            scores = bundle.ranker.score(np.array([row]))[0].astype(float)
            scores[bundle.ranker.seen[row].indices] = -np.inf
            for tags, k in ((["red"], 3), (["shoe"], 2), ([], 6), (["blue", "dotted"], 5)):
                keep = [i for i, item in enumerate(bundle.item_ids) if set(tags) <= set(tags_of[item])
                        and np.isfinite(scores[i])]
                expected = [bundle.item_ids[i] for i in sorted(keep, key=lambda i: -scores[i])[:k]]
                got = client.get(f"/recommendations/{user}", params={"k": k, "tags": tags}).json()["items"]
                assert [i["item_id"] for i in got] == expected, (user, tags)


def test_visrec_serve_binds_loopback_by_default(monkeypatch):
    from click.testing import CliRunner

    from visrec_pipelines.cli import main
    from visrec_pipelines.serving import server

    calls = []
    monkeypatch.setattr(server, "serve", lambda settings, **kwargs: calls.append((settings, kwargs)))
    result = CliRunner().invoke(main, ["serve", "--dataset", "demo", "--poll-seconds", "3"])
    assert result.exit_code == 0, result.output
    settings, kwargs = calls[0]
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8000
    assert settings.dataset == "demo" and settings.serving_poll_s == 3
    assert "127.0.0.1" in CliRunner().invoke(main, ["serve", "--help"]).output
