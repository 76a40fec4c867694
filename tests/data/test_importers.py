"""Importers keep every source row and report what they could not bring (missing images)."""
import pandas as pd
import pytest
from PIL import Image

from visrec_pipelines.data.contract import EVENT_COLUMNS, Dataset, DatasetError
from visrec_pipelines.data.importers import import_folder, import_movielens
from visrec_pipelines.times import contract_timestamps


def test_unix_seconds_become_iso_and_garbage_is_kept_for_validation():
    assert contract_timestamps(["964982703", "not a time", None], "unix_s").tolist() == [
        "2000-07-30T18:45:03Z", "not a time", None]


def make_mini_movielens(root):
    (root / "posters").mkdir(parents=True)
    pd.DataFrame({"item_id": [1, 2, 3], "title": ["A (1995)", "B (1996)", "C (1997)"],
                  "genres": ["Comedy", "Drama|Romance", "Horror"]}).to_csv(root / "movies.csv", index=False)
    pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 3, 9], "rating": [4.0, 3.5, 5.0, 2.0],
                  "timestamp": [964982703, 964981247, 964982224, "oops"]}).to_csv(root / "ratings.csv", index=False)
    for item_id in (1, 2):
        Image.new("RGB", (40, 60), "red").save(root / "posters" / f"{item_id}.jpg")


def test_movielens_mini(tmp_path):
    make_mini_movielens(tmp_path / "src")
    ds = import_movielens(tmp_path / "src", tmp_path / "out")
    items, events = ds.read_items(), ds.read_events()
    assert items["image_path"].tolist() == ["images/1.jpg", "images/2.jpg", None]
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert len(events) == 4 and set(events["event_type"]) == {"rating"}
    assert events["timestamp"].iloc[-1] == "oops"  # kept for the pipeline to quarantine
    assert ds.read_manifest()["items_without_image"] == [   # with the reason now, as the folder importer's
        {"item_id": "3", "image": "3.jpg", "reason": "no image file at '3.jpg'"}]


def test_movielens_rejects_wrong_folder(tmp_path):
    with pytest.raises(DatasetError, match="ratings.csv"):
        import_movielens(tmp_path, tmp_path / "out")


@pytest.mark.shared_data
def test_movielens_real_accounts_for_every_row(movielens_path, tmp_path):
    ds = import_movielens(movielens_path, tmp_path / "movielens")
    manifest = ds.read_manifest()["counts"]
    assert manifest["source_ratings"] == len(ds.read_events()) == 100_836
    assert manifest["source_movies"] == len(ds.read_items()) == 9_742
    assert manifest["images_copied"] + manifest["items_without_image"] == 9_742
    assert 200 <= manifest["items_without_image"] <= 250
    assert len(list(ds.images_dir.iterdir())) == manifest["images_copied"]


def test_folder_import(tmp_path):
    src = tmp_path / "src"
    (src / "pics").mkdir(parents=True)
    Image.new("RGB", (50, 50), "blue").save(src / "pics" / "a.PNG")
    pd.DataFrame({"item_id": ["a", "b"], "image": ["a.PNG", "missing.jpg"], "colour": ["blue", "red"]}
                 ).to_csv(src / "items.csv", index=False)
    pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "event_type": ["view"], "value": [""],
                  "timestamp": ["2024-01-01T00:00:00Z"]}).to_csv(src / "events.csv", index=False)
    ds = import_folder(src / "items.csv", src / "events.csv", src / "pics", tmp_path / "shop")
    items = ds.read_items()
    assert items.columns[:3].tolist() == ["item_id", "image_path", "title"]
    assert items["colour"].tolist() == ["blue", "red"]
    assert (ds.root / items["image_path"][0]).is_file() and items["image_path"][1] is None
    assert ds.read_manifest()["items_without_image"] == [
        {"item_id": "b", "image": "missing.jpg", "reason": "no image file at 'missing.jpg'"}]


def test_folder_import_takes_images_only_from_inside_the_images_folder(tmp_path):
    src = tmp_path / "src"
    (src / "pics").mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(b"not for the dataset")
    Image.new("RGB", (40, 40), "red").save(src / "pics" / "ok.jpg")
    (src / "pics" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    pd.DataFrame({"item_id": ["ok", "up", "abs", "link"],
                  "image": ["ok.jpg", "../../secret.jpg", "/etc/hostname", "link.jpg"]}
                 ).to_csv(src / "items.csv", index=False)
    (src / "events.csv").write_text("user_id,item_id,event_type,value,timestamp\n")
    ds = import_folder(src / "items.csv", src / "events.csv", src / "pics", tmp_path / "shop")
    assert ds.read_items()["image_path"].notna().tolist() == [True, False, False, False]
    assert len(list(ds.images_dir.iterdir())) == 1                       # nothing else was copied
    reasons = {e["item_id"]: e["reason"] for e in ds.read_manifest()["items_without_image"]}
    assert all("outside the images folder" in reasons[i] for i in ("up", "abs", "link"))
    assert ds.import_image_problems()["abs"].startswith("import: image path '/etc/hostname'")


def test_folder_import_of_a_messy_export_loses_no_row(tmp_path):
    """Semicolons, a Windows-1252 byte, a trailing separator and one ragged row: the import goes
    through, and the ragged row reaches the pipeline marked, to be quarantined with its reason."""
    from visrec_pipelines.quality.behaviour import validate_events

    src = tmp_path / "src"
    (src / "pics").mkdir(parents=True)
    Image.new("RGB", (40, 40), "red").save(src / "pics" / "a.jpg")
    (src / "items.csv").write_bytes("item_id;image;title\na;a.jpg;Café chair\n".encode("cp1252"))
    (src / "events.csv").write_bytes(("user_id;item_id;event_type;value;timestamp\n"
                                      "u1;a;view;;2024-01-01T00:00:00Z;\n"
                                      "u2;a;rating;4;2024-01-02T00:00:00Z\n"
                                      "u3;a;view\n").encode("cp1252"))
    ds = import_folder(src / "items.csv", src / "events.csv", src / "pics", tmp_path / "shop")
    assert ds.read_items()["title"].tolist() == ["Café chair"]
    manifest = ds.read_manifest()
    assert manifest["counts"]["unreadable_event_rows"] == 1 and any("cp1252" in n for n in manifest["notes"])
    events = ds.read_events()
    assert len(events) == 3
    outcome = validate_events(events, known_item_ids=["a"], now=1.9e9)
    assert len(outcome.valid) == 2 and outcome.quarantined["user_id"].tolist() == ["u3"]
    assert outcome.quarantined["reason"].iloc[0].startswith("row has 3 fields")


def test_folder_import_needs_contract_columns(tmp_path):
    (tmp_path / "items.csv").write_text("item_id,image\na,a.jpg\n")
    (tmp_path / "events.csv").write_text("user,item\nu,a\n")
    with pytest.raises(DatasetError, match="user_id"):
        import_folder(tmp_path / "items.csv", tmp_path / "events.csv", tmp_path, tmp_path / "x")


def test_dataset_check_reports_missing_tables(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        Dataset(tmp_path / "nope").check()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "items.csv").write_text("item_id,image_path,title\n")
    with pytest.raises(DatasetError, match="events.csv"):
        Dataset(tmp_path / "half").read_events()
