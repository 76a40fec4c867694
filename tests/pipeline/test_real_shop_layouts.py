"""A shop's data as it comes, end to end with the default settings: a fashion shop's purchase log in
the H&M layout (date-only times, repeat purchases, ~60% of purchases on articles it has no photo or
row for) and a review log in the Amazon layout (unix times, gzipped JSON lines, single-quoted
metadata). Each imports in one command, runs to a champion, serves a recommendation, and every
source row is accounted for."""
import gzip
import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from dagster import AssetKey

from visrec_pipelines.cli import main
from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.runner import dagster_instance
from visrec_pipelines.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def taste(tmp_path_factory):
    """Shoppers with visual taste (the demo's simulation), to dress up in other shops' layouts."""
    return generate_demo(tmp_path_factory.mktemp("taste") / "demo", n_items=90, n_users=40, seed=21)


def hm_layout(demo, root):
    """articles.csv, customers.csv, transactions_train.csv and images/0xx/0xxxxxxxxx.jpg."""
    items, events = demo.read_items(), demo.read_events()
    article = {i: f"0{110000000 + n:09d}" for n, i in enumerate(items["item_id"])}
    pd.DataFrame({"article_id": items["item_id"].map(article), "prod_name": items["title"],
                  "product_type_name": items["category"], "colour_group_name": items["colour"],
                  "graphical_appearance_name": items["pattern"],
                  "detail_desc": "A " + items["title"].str.lower() + "."}).to_csv(root / "articles.csv", index=False)
    for item_id, path in zip(items["item_id"], items["image_path"]):
        folder = root / "images" / article[item_id][:3]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(demo.root / path, folder / f"{article[item_id]}.jpg")
    customer = {u: hashlib.sha256(u.encode()).hexdigest() for u in events["user_id"].unique()}
    pd.DataFrame({"customer_id": list(customer.values()), "age": 30}).to_csv(root / "customers.csv", index=False)
    bought = events[events["event_type"].isin(["click", "purchase"])]
    sales = pd.DataFrame({"t_dat": bought["timestamp"].str[:10], "customer_id": bought["user_id"].map(customer),
                          "article_id": bought["item_id"].map(article), "price": "0.0169",
                          "sales_channel_id": 2})
    rng = np.random.default_rng(0)
    repeats = sales.sample(frac=0.1, random_state=1)                        # two of the same, same day
    gone = sales.sample(n=int(1.5 * len(sales)), replace=True, random_state=2).assign(
        article_id=[f"0{900000000 + k:09d}" for k in rng.integers(0, 400, int(1.5 * len(sales)))])
    transactions = pd.concat([sales, repeats, gone]).sort_values("t_dat", kind="stable")
    transactions.to_csv(root / "transactions_train.csv", index=False)
    return len(transactions), len(gone) / len(transactions)


def amazon_layout(demo, root):
    """Gzipped JSON lines of reviews, a metadata file with single-quoted lines, images/<asin>.jpg."""
    items, events = demo.read_items(), demo.read_events()
    asin = {i: f"B{n:05d}" for n, i in enumerate(items["item_id"])}
    (root / "images").mkdir(parents=True)
    for item_id, path in zip(items["item_id"], items["image_path"]):
        shutil.copy(demo.root / path, root / "images" / f"{asin[item_id]}.jpg")
    seconds = pd.to_datetime(events["timestamp"], utc=True).astype("int64") // 10**9
    stars = events["event_type"].map({"view": 2.0, "click": 4.0, "add_to_cart": 4.0, "purchase": 5.0, "rating": 3.0})
    with gzip.open(root / "reviews.json.gz", "wt") as out:
        for user, item, star, when in zip(events["user_id"], events["item_id"], stars, seconds):
            out.write(json.dumps({"reviewerID": user, "asin": asin[item], "overall": star,
                                  "unixReviewTime": int(when), "summary": "ok"}) + "\n")
    lines = [str({"asin": asin[i], "title": t, "categories": [["Clothing", c, p]]})          # Python literals
             for i, t, c, p in zip(items["item_id"], items["title"], items["category"], items["pattern"])]
    (root / "meta.json").write_text("\n".join(lines) + "\n")
    return len(events)


def run_and_serve(env, root, name) -> tuple[dict, dict]:
    """`visrec run` with the defaults, then one recommendation from the served champion."""
    from fastapi.testclient import TestClient

    from visrec_pipelines.serving.app import create_app

    ran = CliRunner().invoke(main, ["run", "--dataset", name], env=env)
    assert ran.exit_code == 0, ran.output
    settings = Settings(**{k.removeprefix("VISREC_").lower(): v for k, v in env.items() if k.startswith("VISREC_")},
                        dagster_home=env["DAGSTER_HOME"], dataset=name, serving_encoder="none")
    with dagster_instance(settings) as instance:
        events = instance.get_latest_materialization_event(AssetKey("behaviour_events"))
        metadata = {k: v.value for k, v in events.asset_materialization.metadata.items()}
    assert settings.registry().current_champion() is not None
    app = create_app(settings, start_background=False)
    app.state.manager.reload()
    user = settings.warehouse_for().read_table("behaviour_events")["user_id"].iloc[0]
    with TestClient(app) as client:
        answer = client.get(f"/recommendations/{user}", params={"k": 5})
    assert answer.status_code == 200, answer.text
    return metadata, answer.json()


def test_a_fashion_shop_in_the_hm_layout(tmp_path, taste):
    source = tmp_path / "hm"
    source.mkdir()
    n_rows, orphan_share = hm_layout(taste, source)
    assert 0.55 < orphan_share < 0.65
    env = {"VISREC_ROOT": str(tmp_path), "VISREC_ASSETS": str(tmp_path / "assets"),
           "VISREC_WAREHOUSE": str(tmp_path / "warehouse"), "DAGSTER_HOME": str(tmp_path / "dagster"),
           "VISREC_AUTOMATION": "off"}
    imported = CliRunner().invoke(main, ["data", "import", "hm", str(source), "--name", "hm"], env=env)
    assert imported.exit_code == 0, imported.output
    assert "orphans" in imported.output and "exact repeats will count as quantity" in imported.output
    metadata, served = run_and_serve(env, tmp_path, "hm")
    assert metadata["rows_in"] == n_rows and metadata["reconciles"] is True      # every row accounted for
    assert metadata["repeats_merged"] > 0 and metadata["orphans"] >= 0.55 * n_rows and metadata["quarantined"] == 0
    assert len(served["items"]) == 5 and served["known_user"] is True
    assert all(item["item_id"].startswith("01") and len(item["item_id"]) == 10 for item in served["items"])


def test_a_review_log_in_the_amazon_layout(tmp_path, taste):
    source = tmp_path / "amazon"
    n_rows = amazon_layout(taste, source)
    env = {"VISREC_ROOT": str(tmp_path), "VISREC_ASSETS": str(tmp_path / "assets"),
           "VISREC_WAREHOUSE": str(tmp_path / "warehouse"), "DAGSTER_HOME": str(tmp_path / "dagster"),
           "VISREC_AUTOMATION": "off"}
    imported = CliRunner().invoke(main, ["data", "import", "amazon", str(source / "reviews.json.gz"),
                                         str(source / "meta.json"), "--images", str(source / "images"),
                                         "--name", "reviews"], env=env)
    assert imported.exit_code == 0, imported.output
    metadata, served = run_and_serve(env, tmp_path, "reviews")
    assert metadata["rows_in"] == n_rows and metadata["reconciles"] is True
    assert metadata["quarantined"] == 0 and metadata["orphans"] == 0
    assert len(served["items"]) == 5 and all(item["item_id"].startswith("B") for item in served["items"])
