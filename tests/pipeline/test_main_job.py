"""The main job on a small demo shop: vision (incremental embeddings, heads, tags, index), rankers,
evaluation and the promotion gate."""
import shutil

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey

from visrec_pipelines.data.contract import write_table
from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.index.exact import ExactIndex
from visrec_pipelines.recsys import zoo
from visrec_pipelines.runner import dagster_instance, run_pipeline
from visrec_pipelines.settings import Settings
from visrec_pipelines.vision.tags import tags_from_json


def latest(settings, key: str) -> dict:
    with dagster_instance(settings) as instance:
        event = instance.get_latest_materialization_event(AssetKey(key))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    settings = Settings(root=root, assets=root / "assets", warehouse=root / "warehouse",
                        dagster_home=root / "dagster_home", dataset="demo")
    ds = generate_demo(root / "assets" / "demo", n_items=120, n_users=30, seed=11)
    assert run_pipeline(echo=lambda _: None, settings=settings)
    return root, ds, settings


def test_every_catalogue_item_is_embedded_tagged_and_indexed(shop):
    root, ds, settings = shop
    warehouse = root / "warehouse" / "demo"
    embeddings = pd.read_parquet(warehouse / "image_embeddings.parquet")
    tags = pd.read_parquet(warehouse / "semantic_tags.parquet")
    assert len(embeddings) == len(tags) == 120
    assert embeddings["encoder_id"].str.startswith("efficientnet-lite0:").all()
    first = tags_from_json(tags["tags"].iloc[0])
    assert first and all(0 <= t.confidence <= 1 for t in first)
    assert latest(settings, "semantic_tags")["colour_accuracy"] >= 0.9
    snapshot = ExactIndex.load(warehouse / "item_index.npz")
    item = tags["item_id"].iloc[0]
    neighbours = snapshot.similar_items(item, k=5)
    assert len(neighbours) == 5 and item not in [n for n, _ in neighbours]


def test_heads_are_an_mlflow_run_with_held_out_metrics(shop):
    _, _, settings = shop
    metadata = latest(settings, "tag_heads")
    assert set(metadata["label_groups"].split(", ")) == {"category", "colour", "pattern"}
    mlflow = settings.registry().mlflow("visrec-tag-heads")
    run = mlflow.get_run(metadata["mlflow_run_id"])
    assert run.data.metrics["colour.accuracy"] > 0.5
    assert "category.dress.recall" in run.data.metrics
    assert run.data.tags["dataset_version"] == latest(settings, "item_catalogue")["dataset_version"]


def test_every_ranker_is_evaluated_and_the_best_becomes_champion(shop):
    root, _, settings = shop
    table = pd.read_parquet(root / "warehouse" / "demo" / "ranker_evaluation.parquet")
    assert set(table["ranker"]) == set(zoo.names())
    assert table["ndcg@20"].between(0, 1).all() and table["model_version"].notna().all()
    gate = latest(settings, "champion_ranker")
    assert gate["promoted"] is True and gate["compared_with"] == "none"
    champion = settings.registry().current_champion()
    assert champion.tags["ranker"] == table["ranker"].iloc[0]
    assert "Promotion gate" in champion.description
    ndcg = table.set_index("ranker")["ndcg@20"]
    assert max(ndcg["vbpr"], ndcg["visual_knn"]) > ndcg["bpr"]   # shoppers here follow visual taste


def test_content_heads_similar_items_text_search_and_fine_tune_run_in_the_main_job(shop):
    from visrec_pipelines.serving.image_search import ImageSearch
    from visrec_pipelines.vision.images import ImageLimits
    from visrec_pipelines.vision.similarity import SimilaritySpace
    from visrec_pipelines.vision.text_search import TextSearch

    root, ds, settings = shop
    warehouse = settings.warehouse_for()
    assert latest(settings, "text_embeddings")["model_id"].startswith("text-all-MiniLM-L6-v2:")
    assert "colour:136" in latest(settings, "tag_heads")["feature_blocks"]
    index = latest(settings, "item_index")
    snapshot = ExactIndex.load(warehouse.item_index_snapshot)
    assert index["dim"] == snapshot.vectors.shape[1] > 1280      # image + label beliefs (+ text, colour)
    # search by image maps a catalogue picture into the index's space: it finds itself
    items = ds.read_items()
    space = SimilaritySpace.load(warehouse.similarity_space)
    search = ImageSearch(settings.encoder, settings.encoder_weights, ImageLimits(), str(settings.cache_dir))
    search.start()
    assert search.wait(120)
    picture = (ds.root / items["image_path"].iloc[5]).read_bytes()
    vector = search.vector(picture, snapshot.dim, None, space)
    assert snapshot.item_ids[int(np.argmax(snapshot.vectors @ vector))] == items["item_id"].iloc[5]
    # words find items through titles and tags
    found = TextSearch.load(warehouse.text_search_index).search("red", k=5)
    red = set(items.loc[items["colour"] == "red", "item_id"])
    assert found and {i for i, _ in found} <= red
    tuned = latest(settings, "fine_tuned_encoder")
    assert tuned["message"] and tuned["mlflow_run_id"] != "none"


def test_incremental_embedding(shop):
    root, ds, settings = shop
    items = ds.read_items()
    added = items.iloc[[0]].assign(item_id="new-item", image_path="images/new-item.jpg")
    shutil.copy(ds.root / items["image_path"].iloc[1], ds.root / "images" / "new-item.jpg")
    changed_path = ds.root / items["image_path"].iloc[2]
    shutil.copy(ds.root / items["image_path"].iloc[3], changed_path)      # same item, new picture
    remaining = pd.concat([items.iloc[:-1], added], ignore_index=True)   # last item removed
    write_table(remaining, ds.items_path)
    assert run_pipeline(echo=lambda _: None, settings=settings)
    metadata = latest(settings, "image_embeddings")
    assert (metadata["embedded_now"], metadata["removed"], metadata["unchanged"]) == (2, 1, 118)
    assert metadata["vectors"] == 120
