"""The main job on a small demo shop: vision (incremental embeddings, heads, tags, index), rankers,
evaluation and the promotion gate."""
import shutil

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance

from visrec_pipelines.data.contract import write_table
from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines import promotion
from visrec_pipelines.index.exact import ExactIndex
from visrec_pipelines.recsys import zoo
from visrec_pipelines.runner import run_pipeline
from visrec_pipelines.tracking import configure
from visrec_pipelines.vision.tags import tags_from_json


def latest(key: str) -> dict:
    with DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(AssetKey(key))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    with pytest.MonkeyPatch.context() as mp:
        for key, sub in {"VISREC_ROOT": "", "VISREC_ASSETS": "assets", "VISREC_WAREHOUSE": "warehouse",
                         "DAGSTER_HOME": "dagster_home"}.items():
            mp.setenv(key, str(root / sub))
        (root / "dagster_home").mkdir()
        ds = generate_demo(root / "assets" / "demo", n_items=120, n_users=30, seed=11)
        assert run_pipeline("demo", echo=lambda _: None)
        yield root, ds, mp


def test_every_catalogue_item_is_embedded_tagged_and_indexed(shop):
    root, ds, _ = shop
    warehouse = root / "warehouse" / "demo"
    embeddings = pd.read_parquet(warehouse / "image_embeddings.parquet")
    tags = pd.read_parquet(warehouse / "semantic_tags.parquet")
    assert len(embeddings) == len(tags) == 120
    assert embeddings["encoder_id"].str.startswith("efficientnet-lite0:").all()
    first = tags_from_json(tags["tags"].iloc[0])
    assert first and all(0 <= t.confidence <= 1 for t in first)
    assert latest("semantic_tags")["colour_accuracy"] >= 0.9
    snapshot = ExactIndex.load(warehouse / "item_index.npz")
    item = tags["item_id"].iloc[0]
    neighbours = snapshot.similar_items(item, k=5)
    assert len(neighbours) == 5 and item not in [n for n, _ in neighbours]


def test_heads_are_an_mlflow_run_with_held_out_metrics(shop):
    metadata = latest("tag_heads")
    assert set(metadata["label_groups"].split(", ")) == {"category", "colour", "pattern"}
    mlflow = configure("visrec-tag-heads")
    run = mlflow.get_run(metadata["mlflow_run_id"])
    assert run.data.metrics["colour.accuracy"] > 0.5
    assert "category.dress.recall" in run.data.metrics
    assert run.data.tags["dataset_version"] == latest("item_catalogue")["dataset_version"]


def test_every_ranker_is_evaluated_and_the_best_becomes_champion(shop):
    root, _, _ = shop
    table = pd.read_parquet(root / "warehouse" / "demo" / "ranker_evaluation.parquet")
    assert set(table["ranker"]) == set(zoo.names())
    assert table["ndcg@20"].between(0, 1).all() and table["model_version"].notna().all()
    gate = latest("champion_ranker")
    assert gate["promoted"] is True and gate["compared_with"] == "none"
    champion = promotion.current_champion("demo")
    assert champion.tags["ranker"] == table["ranker"].iloc[0]
    assert "Promotion gate" in champion.description
    ndcg = table.set_index("ranker")["ndcg@20"]
    assert max(ndcg["vbpr"], ndcg["visual_knn"]) > ndcg["bpr"]   # shoppers here follow visual taste


def test_the_new_champion_is_published_for_serving(shop):
    import json

    import numpy as np

    root, _, _ = shop
    published = latest("champion_vectors")
    manifest = json.loads((root / "warehouse" / "demo" / "champion.json").read_text())
    champion = promotion.current_champion("demo")
    assert manifest["version"] == str(champion.version) == published["champion_version"]
    if manifest["factorised"]:       # user · item vectors reproduce the champion's scores
        snapshot = np.load(root / "warehouse" / "demo" / "champion_vectors.npz")
        bundle = promotion.load_bundle("demo", manifest["version"])
        scores = bundle.ranker.score(np.arange(3))
        assert np.allclose(snapshot["user_vectors"][:3] @ snapshot["item_vectors"].T, scores, atol=1e-4)


def test_incremental_embedding(shop):
    root, ds, _ = shop
    items = ds.read_items()
    added = items.iloc[[0]].assign(item_id="new-item", image_path="images/new-item.jpg")
    shutil.copy(ds.root / items["image_path"].iloc[1], ds.root / "images" / "new-item.jpg")
    changed_path = ds.root / items["image_path"].iloc[2]
    shutil.copy(ds.root / items["image_path"].iloc[3], changed_path)      # same item, new picture
    remaining = pd.concat([items.iloc[:-1], added], ignore_index=True)   # last item removed
    write_table(remaining, ds.items_path)
    assert run_pipeline("demo", echo=lambda _: None)
    metadata = latest("image_embeddings")
    assert (metadata["embedded_now"], metadata["removed"], metadata["unchanged"]) == (2, 1, 118)
    assert metadata["vectors"] == 120
