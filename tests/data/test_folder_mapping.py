"""The folder importer on a shop's own files: column mappings, a users table, Parquet, declared
defaults and time formats, and one-line errors when a mapping does not fit the file."""
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from visrec_pipelines.cli import main
from visrec_pipelines.data.importers import ColumnMapping, import_folder
from visrec_pipelines.data.tables import DatasetError


@pytest.fixture
def shop(tmp_path):
    """H&M-like column names: articles with images, purchases in Parquet with unix seconds, customers."""
    src = tmp_path / "shop"
    (src / "pics").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (40, 40), "green").save(src / "pics" / name)
    pd.DataFrame({"article_id": ["0100", "0200"], "picture": ["a.jpg", "b.jpg"], "prod_name": ["Top", "Skirt"],
                  "colour": ["Black", "White"], "detail_desc": ["A top; soft.", "A long skirt, pleated."]}
                 ).to_csv(src / "articles.csv", index=False)
    pd.DataFrame({"customer_id": ["c1", "c1", "c2", "c9"], "article_id": ["0100", "0100", "0200", "0300"],
                  "t": [1704164645, 1704164645, 1704164700, 1704164800], "price": [0.05, 0.05, 0.02, 0.01]}
                 ).to_parquet(src / "purchases.parquet")
    pd.DataFrame({"customer_id": ["c1", "c2"], "age": [30, 41]}).to_csv(src / "customers.csv", index=False)
    return src


def test_mapped_columns_users_and_defaults(shop, tmp_path):
    mapping = ColumnMapping.build(pairs=("user_id=customer_id", "item_id=article_id", "timestamp=t",
                                         "image=picture", "items.title=prod_name"), event_type="purchase")
    ds = import_folder(shop / "articles.csv", shop / "purchases.parquet", shop / "pics", tmp_path / "out",
                       users_csv=shop / "customers.csv", mapping=mapping)
    items, events, users = ds.read_items(), ds.read_events(), ds.read_users()
    assert items.columns.tolist() == ["item_id", "image_path", "title", "colour", "detail_desc"]  # all kept
    assert items["item_id"].tolist() == ["0100", "0200"] and items["title"].tolist() == ["Top", "Skirt"]
    assert events["timestamp"].tolist()[:3] == ["2024-01-02T03:04:05Z"] * 2 + ["2024-01-02T03:05:00Z"]
    assert set(events["event_type"]) == {"purchase"} and events["value"].isna().all()
    assert events["price"].tolist() == ["0.05", "0.05", "0.02", "0.01"]
    assert users.columns.tolist() == ["user_id", "age"]
    manifest = ds.read_manifest()
    assert manifest["counts"]["source_events"] == manifest["counts"]["events"] == 4
    report = manifest["import_report"]["events"]
    assert report["checks"].keys() == {"item_id_known", "user_id_known"}      # no timestamp trouble
    assert report["exact_repeats"] == 1 and report["orphans"] == 1


def test_a_mapping_file_with_a_day_first_format(shop, tmp_path):
    """Declared day-first dates are converted; a value the declaration does not fit is written as it
    came: the pipeline still reads an unambiguous ISO date, and quarantines anything else."""
    (shop / "events.csv").write_text("who;what;when;kind\nc1;0100;02/01/2024;view\nc2;0200;2024-01-02;click\n"
                                     "c2;0200;31/02/2024;view\n")
    (shop / "mapping.yaml").write_text(
        "events: {user_id: who, item_id: what, timestamp: when, event_type: kind}\n"
        "items: {item_id: article_id, image: picture, title: prod_name}\n"
        "timestamp_format: '%d/%m/%Y'\n")
    ds = import_folder(shop / "articles.csv", shop / "events.csv", shop / "pics", tmp_path / "out",
                       mapping=ColumnMapping.build(shop / "mapping.yaml"))
    assert ds.read_events()["timestamp"].tolist() == ["2024-01-02T00:00:00Z", "2024-01-02", "31/02/2024"]
    checks = ds.read_manifest()["import_report"]["events"]["checks"]
    assert checks["timestamp_parseable"] == {"rows": 1, "reason": "timestamp cannot be parsed as a date-time",
                                             "examples": ["31/02/2024"]}


def test_a_mapping_naming_a_missing_column_is_one_line(shop, tmp_path, monkeypatch):
    monkeypatch.setenv("VISREC_ROOT", str(tmp_path))
    result = CliRunner().invoke(main, [
        "data", "import", "folder", "--items", str(shop / "articles.csv"), "--events", str(shop / "purchases.parquet"),
        "--images", str(shop / "pics"), "--map", "user_id=customer", "--map", "item_id=article_id",
        "--map", "timestamp=t", "--map", "image=picture", "--event-type", "purchase", "--no-dvc"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line == (f"Error: {shop / 'purchases.parquet'}: the mapping user_id=customer names column 'customer', "
                    f"which the file lacks; it has ['customer_id', 'article_id', 't', 'price']")


def test_events_need_a_type_column_or_a_declared_one(shop, tmp_path):
    mapping = ColumnMapping.build(pairs=("user_id=customer_id", "item_id=article_id", "timestamp=t", "image=picture"))
    with pytest.raises(DatasetError, match=r"\['event_type'\] missing.*--event-type purchase"):
        import_folder(shop / "articles.csv", shop / "purchases.parquet", shop / "pics", tmp_path / "out",
                      mapping=mapping)
    with pytest.raises(DatasetError, match="event type 'buy' is not one of"):
        ColumnMapping.build(event_type="buy")
    with pytest.raises(DatasetError, match="unknown timestamp format 'dd/mm'"):
        ColumnMapping.build(timestamp_format="dd/mm")
    (shop / "bad.yaml").write_text("event: {user_id: x}\n")
    with pytest.raises(DatasetError, match=r"unknown key\(s\) \['event'\]"):
        ColumnMapping.build(shop / "bad.yaml")


def test_the_cli_prints_counts_then_the_import_report(shop, tmp_path, monkeypatch):
    monkeypatch.setenv("VISREC_ROOT", str(tmp_path))
    result = CliRunner().invoke(main, [
        "data", "import", "folder", "--items", str(shop / "articles.csv"), "--events", str(shop / "purchases.parquet"),
        "--images", str(shop / "pics"), "--users", str(shop / "customers.csv"), "--map", "user_id=customer_id",
        "--map", "item_id=article_id", "--map", "timestamp=t", "--map", "image=picture",
        "--event-type", "purchase", "--name", "shop"])
    assert result.exit_code == 0, result.output
    lines = result.output[result.output.index("dataset 'shop' at"):].strip().splitlines()   # after tqdm's bar
    assert lines[0].startswith(f"dataset 'shop' at {tmp_path / 'assets' / 'shop'}") and "events=4" in lines[0]
    assert lines[1] == ("import report: of 4 events the pipeline will set aside 0 malformed and 1 orphans; "
                        "1 exact repeats will count as quantity, not be rejected")
    assert "  item_id_known: 1 (item_id is not in the item catalogue), e.g. '0300'" in lines
    assert "  user_id_known: 1 (user_id is not in the users table), e.g. 'c9'" in lines
    assert lines[-1].startswith("DVC: ") and "not inside a DVC project" in lines[-1]
