"""The H&M and Amazon importers on fixtures in those exact layouts: every source row accounted for,
ids kept as text, every column kept, and an import report that agrees with the pipeline."""
import json
import shutil

import pandas as pd
import pytest

from visrec_pipelines.data.contract import EVENT_COLUMNS
from visrec_pipelines.data.importers import import_amazon, import_hm
from visrec_pipelines.data.tables import DatasetError


def test_hm_layout(hm_source, tmp_path):
    ds = import_hm(hm_source.root, tmp_path / "assets" / "hm")
    items, events, users = ds.read_items(), ds.read_events(), ds.read_users()
    manifest = ds.read_manifest()
    counts = manifest["counts"]
    assert counts["source_articles"] == counts["items"] == len(items) == 5
    assert counts["source_transactions"] == counts["events"] == len(events) == 20
    assert counts["source_customers"] == counts["users"] == len(users) == 3

    assert items["item_id"].tolist() == hm_source.articles                      # leading zeros kept
    assert items.columns[:3].tolist() == ["item_id", "image_path", "title"]
    assert items["title"][0] == "Strap top 0" and items["description"][0].startswith('Jersey top 0 with narrow, "')
    kept = set(hm_source.article_columns) - {"article_id", "prod_name", "detail_desc"}
    assert kept <= set(items.columns)                                      # every other column, as it came
    assert items["image_path"].tolist()[:4] == [f"images/{a[:3]}/{a}.jpg" for a in hm_source.articles[:4]]
    assert all((ds.root / p).is_file() for p in items["image_path"][:4])
    assert items["image_path"][4] is None
    assert manifest["items_without_image"][0]["reason"] == "no image file at '012/0120129014.jpg'"

    assert events.columns[:5].tolist() == list(EVENT_COLUMNS)
    assert set(events["event_type"]) == {"purchase"} and events["value"].isna().all()
    assert events["timestamp"][0] == "2018-09-20T00:00:00Z"                # date only: midnight UTC
    assert events["item_id"][0] == "0108775015" and events["price"][0] == "0.0508305084745762"
    assert users["user_id"].tolist() == hm_source.customers and "club_member_status" in users

    report = manifest["import_report"]["events"]
    assert report["checks"]["item_id_known"]["rows"] == 12                 # 60% on unknown articles
    assert report["checks"]["user_id_known"]["examples"] == [hm_source.stranger]
    assert (report["orphans"], report["malformed"], report["exact_repeats"]) == (13, 0, 1)


def test_the_import_report_agrees_with_the_pipeline(hm_source, tmp_path):
    from visrec_pipelines.quality.behaviour import validate_events

    ds = import_hm(hm_source.root, tmp_path / "assets" / "hm")
    report = ds.read_manifest()["import_report"]["events"]
    outcome = validate_events(ds.read_events(), known_item_ids=ds.read_items()["item_id"].dropna(),
                              known_user_ids=ds.read_users()["user_id"])
    assert len(outcome.orphans) == report["orphans"] and len(outcome.malformed) == report["malformed"]
    assert outcome.repeats_merged == report["exact_repeats"] and outcome.reconciles()


def test_hm_folder_without_transactions_is_a_clear_error(hm_source, tmp_path):
    (hm_source.root / "transactions_train.csv").unlink()
    with pytest.raises(DatasetError, match="transactions_train.csv is missing"):
        import_hm(hm_source.root, tmp_path / "hm")


@pytest.mark.shared_data
def test_hm_importer_on_the_real_catalogue(fashion_catalogue, tmp_path):
    """The real articles.csv and its flat images/ folder, with a transaction added."""
    catalogue = fashion_catalogue
    source = tmp_path / "hm"
    source.mkdir()
    shutil.copy(catalogue / "articles.csv", source / "articles.csv")
    (source / "images").symlink_to(catalogue / "images")
    (source / "transactions_train.csv").write_text(
        "t_dat,customer_id,article_id,price,sales_channel_id\n"
        f"2020-09-22,{'a' * 64},0108775015,0.01,2\n")
    ds = import_hm(source, tmp_path / "out")
    items, counts = ds.read_items(), ds.read_manifest()["counts"]
    assert counts["items"] == 1467 and items["item_id"][0] == "0108775015"
    assert counts["images_copied"] == 1467 and items["image_path"][0] == "images/0108775015.jpg"
    assert ds.read_manifest()["import_report"]["events"]["set_aside"] == 0


def test_amazon_layout(amazon_source, tmp_path):
    ds = import_amazon(amazon_source / "reviews_Clothing.json.gz", amazon_source / "meta_Clothing.json",
                       amazon_source / "images", tmp_path / "assets" / "amazon")
    items, events, manifest = ds.read_items(), ds.read_events(), ds.read_manifest()
    counts = manifest["counts"]
    assert counts["source_reviews"] == counts["events"] == len(events) == 6      # the blank line is no row
    assert counts["source_products"] == counts["items"] == len(items) == 3
    assert counts["unreadable_review_lines"] == 1 and counts["images_copied"] == 2

    assert items["item_id"].tolist() == ["B0001", "B0002", "B0003"]
    assert items["categories"].tolist() == ["Clothing, Shoes & Jewelry|Women|Shoes|Sneakers",
                                            "Clothing|Women|Coats", "Clothing|Men|Belts"]
    assert items["title"][2] == "Men's belt"                                     # the single-quoted line
    assert items["description"][1] == "Waterproof. Hooded." and items["brand"][0] == "Acme"
    assert json.loads(items["related"][0]) == {"also_bought": ["B0002"]}
    assert items["image_path"].tolist() == ["images/B0001.jpg", "images/B0002.jpg", None]

    assert set(events["event_type"]) == {"rating"} and events["value"][0] == "5.0"
    assert events["timestamp"].tolist()[:2] == ["2009-09-13T00:00:00Z", "2010-01-01T00:00:00Z"]
    assert events["timestamp"][3] == "2014-01-02T00:00:00Z"                       # from reviewTime
    assert events["row_error"][2].startswith("line 4 ") and events["source_row"][2].startswith('{"reviewerID": "A4"')
    assert events["reviewText"][0] == 'Fits well, "true" to size.' and json.loads(events["helpful"][0]) == [2, 3]
    assert any("Python dict literals" in note for note in manifest["notes"])

    report = manifest["import_report"]["events"]
    assert report["checks"]["row_well_formed"]["rows"] == 1 and report["malformed"] == 1
    assert report["checks"]["item_id_known"]["examples"] == ["B9999"] and report["orphans"] == 1


def test_amazon_reviews_without_a_time_are_a_clear_error(amazon_source, tmp_path):
    (tmp_path / "reviews.json").write_text('{"reviewerID": "A1", "asin": "B0001", "overall": 5.0}\n')
    with pytest.raises(DatasetError, match="neither unixReviewTime nor reviewTime"):
        import_amazon(tmp_path / "reviews.json", amazon_source / "meta_Clothing.json",
                      amazon_source / "images", tmp_path / "out")


def test_amazon_images_only_from_inside_their_folder(amazon_source, tmp_path):
    (tmp_path / "secret.jpg").write_bytes(b"not for the dataset")
    (amazon_source / "meta.json").write_text('{"asin": "../../secret", "title": "x"}\n')
    ds = import_amazon(amazon_source / "reviews_Clothing.json.gz", amazon_source / "meta.json",
                       amazon_source / "images", tmp_path / "out")
    assert ds.read_items()["image_path"].isna().all() and not any(ds.images_dir.iterdir())
    assert "outside the images folder" in ds.read_manifest()["items_without_image"][0]["reason"]
    assert pd.isna(ds.read_items()["categories"][0])


def test_an_import_never_empties_its_own_source(amazon_source):
    with pytest.raises(DatasetError, match="holds the source"):
        import_amazon(amazon_source / "reviews_Clothing.json.gz", amazon_source / "meta_Clothing.json",
                      amazon_source / "images", amazon_source)
    assert (amazon_source / "images" / "B0001.jpg").is_file()
