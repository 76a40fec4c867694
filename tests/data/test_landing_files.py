"""The landing area as users and crashes leave it: empty or header-less files, a damaged ledger,
an empty users table. One bad file never stops the dataset; nothing in it is lost."""
import pytest

from visrec_pipelines.data.contract import Dataset, DatasetError
from visrec_pipelines.data.landing import EventLanding
from visrec_pipelines.data.rules import validate_event
from visrec_pipelines.quality.behaviour import validate_events

HEADER = "user_id,item_id,event_type,value,timestamp,event_id\n"


@pytest.fixture
def shop(tmp_path):
    root = tmp_path / "shop"
    root.mkdir()
    (root / "items.csv").write_text("item_id,image_path,title\na,,A\nb,,B\n")
    (root / "events.csv").write_text("user_id,item_id,event_type,value,timestamp\nu1,a,view,,2025-01-01T00:00:00Z\n")
    dataset = Dataset(root)
    dataset.landing_events_dir.mkdir(parents=True)
    return dataset


def test_empty_and_headerless_landing_files_do_not_stop_the_others(shop):
    landing = shop.landing_events_dir
    (landing / "events-empty.csv").write_text("")
    (landing / "events-noheader.csv").write_text("u2,b,click,,2025-01-02T00:00:00Z,x1\n"
                                                 "u3,a,view,,2025-01-03T00:00:00Z,x2\n")
    (landing / "events-good.csv").write_text(HEADER + "u4,b,purchase,,2025-01-04T00:00:00Z,x3\n")
    events = shop.read_events()
    assert len(events) == 1 + 2 + 1                           # every line of every file is a row
    outcome = validate_events(events, known_item_ids=["a", "b"], now=1.9e9)
    assert sorted(outcome.valid["user_id"]) == ["u1", "u4"]
    bad = outcome.quarantined
    assert len(bad) == 2 and (bad["failed_checks"] == "row_well_formed").all()
    assert bad["reason"].str.startswith("landing file events-noheader.csv is not a table").all()
    assert bad["source_row"].tolist() == ["u2,b,click,,2025-01-02T00:00:00Z,x1", "u3,a,view,,2025-01-03T00:00:00Z,x2"]


def test_a_damaged_ledger_is_rebuilt_from_the_landing_files(shop):
    known = {"a", "b"}
    event = {"event_id": "e1", "user_id": "u1", "item_id": "a", "event_type": "click"}
    EventLanding.for_dataset(shop).store([validate_event(event, known)])
    ledger = shop.landing_events_dir / "_ledger.sqlite3"
    ledger.write_bytes(b"this is not a database" * 100)
    reopened = EventLanding.for_dataset(shop)
    assert reopened.repairs and "rebuilt" in reopened.repairs[0]
    assert reopened.store([validate_event(event, known)]).duplicates == ["e1"]   # a retry stays a retry
    assert len(shop.read_landed_events()) == 1


def test_an_empty_users_table_is_a_clear_error(shop):
    (shop.root / "users.csv").write_text("")
    with pytest.raises(DatasetError, match="users.csv: the file is empty"):
        shop.read_users()
