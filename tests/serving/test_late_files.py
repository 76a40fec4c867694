"""Files the pipeline writes after the index snapshot reach serving at the next check: text_search.npz
(its own asset, which may run after item_index) and similarity_space.npz (written right after the
snapshot, so a check in between sees the new snapshot with the old space, or none)."""
from fastapi.testclient import TestClient

from visrec_pipelines.index.exact import ExactIndex
from visrec_pipelines.vision.heads import find_label_groups, train_heads
from visrec_pipelines.vision.similarity import SimilaritySpace
from visrec_pipelines.vision.text_search import TextSearch


def test_text_index_written_after_the_snapshot_is_served(shop, app_factory):
    dataset = shop.dataset("late-text")
    warehouse = shop.settings(dataset).warehouse_for()
    warehouse.text_search_index.unlink()
    app = app_factory(dataset)             # state loaded: index yes, text index not yet
    with TestClient(app) as client:
        assert client.get("/search/text", params={"q": "red"}).status_code == 503
        items = shop.items()
        TextSearch(items["item_id"], items["title"], [[r.category, r.colour, r.pattern] for r in
                                                      items.itertuples()]).save(warehouse.text_search_index)
        app.state.manager.reload()         # what the watcher does every poll
        assert client.get("/search/text", params={"q": "red"}).status_code == 200


def test_space_written_after_the_snapshot_is_used_by_image_search(shop, app_factory):
    dataset = shop.dataset("late-space")
    warehouse = shop.settings(dataset).warehouse_for()
    items = shop.items().set_index("item_id").loc[shop.index.item_ids].reset_index()
    blocks = {"image": shop.index.vectors}
    heads, _ = train_heads(blocks, items, [g for g in find_label_groups(items, min_support=2)
                                           if g.column in ("category", "colour")])
    space = SimilaritySpace(heads, image_weight=1.0, label_weight=2.0)
    ExactIndex(items["item_id"], space.vectors(blocks), shop.index.categories, shop.index.tags,
               source="visrec_items_late_space_1").save(warehouse.item_index_snapshot)
    app = app_factory(dataset)             # the snapshot is new, the space not written yet
    app.state.images.start()
    assert app.state.images.wait(120)
    space.save(warehouse.similarity_space)  # item_index writes it right after the snapshot
    app.state.manager.reload()
    with TestClient(app) as client:
        row = items.iloc[7]
        data = (shop.assets / dataset / row["image_path"]).read_bytes()
        response = client.post("/search/image", params={"k": 3}, files={"file": ("p.jpg", data, "image/jpeg")})
        assert response.status_code == 200, response.text
        assert response.json()["items"][0]["item_id"] == row["item_id"]
