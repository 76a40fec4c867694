"""Only items the current catalogue lists AND the current item index holds (they have a usable
image) are shown, whatever the champion knows: known users' cached lists, filtered rescoring, cold
start, similar items."""
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from visrec_pipelines.index.exact import ExactIndex


@pytest.fixture(scope="module")
def shrunk_shop(shop):
    """A shop whose champion knows every item, whose index lost the images of the items the
    champion likes most, and whose catalogue no longer lists one more item (still indexed)."""
    dataset = shop.dataset("unindexed")
    version = shop.register(dataset, "bpr")
    bundle = shop.registry(dataset).load_bundle(version)
    users = list(shop.split.train.user_ids)
    liked = bundle.recommend(users, k=2)["item_id"].value_counts().index[:6].tolist()
    popular = bundle.item_ids[np.argsort(-np.asarray(bundle.popularity))[:2]].tolist()
    no_image = set(liked) | set(popular)
    index = shop.index
    keep = [r for r, item in enumerate(index.item_ids.tolist()) if item not in no_image]
    kept_ids = index.item_ids[keep].tolist()
    # the item most like the first kept one leaves the catalogue (the index and champion keep it)
    probe = kept_ids[0]
    unlisted = next(i for i, _ in index.similar_items(probe, k=5) if i in kept_ids and i != probe)
    ExactIndex(index.item_ids[keep], index.vectors[keep], index.categories[keep], [index.tags[r] for r in keep],
               source="visrec_items_unindexed").save(shop.warehouse / dataset / "item_index.npz")
    items = pd.read_csv(shop.assets / dataset / "items.csv", dtype=str)
    items[items["item_id"] != unlisted].to_csv(shop.assets / dataset / "items.csv", index=False)
    return dataset, no_image, unlisted, probe


@pytest.mark.parametrize("cached, ann_min_items", [(200, 30_000), (3, 30_000), (200, 0), (3, 0)])
def test_items_without_a_usable_image_are_never_recommended(shop, app_factory, shrunk_shop, monkeypatch, cached,
                                                            ann_min_items):
    """cached 3: filters fall back to rescoring every candidate; ann_min_items 0: the best items
    come from the IVF, as for a large catalogue."""
    from visrec_pipelines.serving import queries

    monkeypatch.setattr(queries, "TOP_CACHED", cached)
    dataset, no_image, unlisted, _ = shrunk_shop
    hidden = no_image | {unlisted}
    with TestClient(app_factory(dataset, serving_encoder="none", ann_min_items=ann_min_items)) as client:
        assert (client.get("/status").json()["champion"]["ann_recall"] is None) == (ann_min_items > 0)
        for user in [*shop.split.train.user_ids, "someone-new"]:
            for tags in ([], ["red"], ["shoe"], ["blue", "dotted"]):
                body = client.get(f"/recommendations/{user}", params={"k": 48, "tags": tags}).json()
                shown = {i["item_id"] for i in body["items"]}
                assert not shown & hidden, (user, tags, shown & hidden)
                assert all(set(tags) <= set(i["tags"]) for i in body["items"])
        new = client.get("/recommendations/someone-new", params={"k": 48}).json()["items"]
        assert new and new[0]["reason"].startswith("popular")     # ranks count shown items only
        for item in client.get(f"/recommendations/{shop.split.train.user_ids[0]}", params={"k": 5}).json()["items"]:
            assert client.get(item["image_url"], params={"size": 64}).status_code == 200


def test_similar_items_never_show_an_item_the_catalogue_dropped(app_factory, shrunk_shop, shop):
    dataset, no_image, unlisted, probe = shrunk_shop
    with TestClient(app_factory(dataset, serving_encoder="none")) as client:
        for tags in ([], ["red"]):
            body = client.get(f"/items/{probe}/similar", params={"k": 10, "tags": tags}).json()
            shown = [i["item_id"] for i in body["items"]]
            assert unlisted not in shown and not set(shown) & no_image
            titles = shop.items(dataset).set_index("item_id")["title"]
            assert all(i["title"] == titles[i["item_id"]] for i in body["items"])   # each card is its own
            assert len(shown) == len(set(shown))


@pytest.mark.parametrize("cached, block_bytes", [(200, 0), (3, 0), (3, 2**30)])
def test_a_large_catalogues_ivf_recommends_what_the_full_scan_does(shop, app_factory, monkeypatch, cached,
                                                                   block_bytes):
    """On this small shop the IVF has one list, so its answers must be the scan's exactly; cached 3:
    a filter leaves too few of the cached best, so the IVF is searched with the filter's bitmap
    (block_bytes 0), or the filter's own block of item vectors is scored and the IVF never sees a
    filter."""
    from visrec_pipelines.serving import queries

    monkeypatch.setattr(queries, "TOP_CACHED", cached)
    monkeypatch.setattr(queries, "FILTER_BLOCK_MAX_BYTES", block_bytes)
    with TestClient(app_factory("demo", serving_encoder="none")) as exact, \
            TestClient(app_factory("demo", serving_encoder="none", ann_min_items=0)) as ann:
        assert ann.get("/status").json()["champion"]["ann_recall"] == 1.0
        ivf = ann.app.state.manager.state.best_items
        filtered = []
        search = ivf.search
        monkeypatch.setattr(ivf, "search", lambda q, k, allowed=None, **kw: (
            filtered.append(allowed is not None), search(q, k, allowed, **kw))[1])
        for user in shop.split.train.user_ids:
            for tags in ([], ["red"]):
                want = [i["item_id"] for i in exact.get(f"/recommendations/{user}", params={"k": 20, "tags": tags})
                        .json()["items"]]
                got = [i["item_id"] for i in ann.get(f"/recommendations/{user}", params={"k": 20, "tags": tags})
                       .json()["items"]]
                assert got == want and want, (user, tags)
        assert any(filtered) == (block_bytes == 0)
