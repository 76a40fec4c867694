"""Reading tables as real exports come: every row back, unshifted, as text; malformed rows kept and
marked; a missing column a one-line error. Property tests throw spreadsheet-style CSVs at it."""
import csv
import io
import string

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visrec_pipelines.data.tables import ROW_ERROR, SOURCE_ROW, DatasetError, read_text_table

HEADER = ["user_id", "item_id", "event_type", "value", "timestamp"]


def test_a_trailing_comma_on_every_row_shifts_nothing(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,event_type,value,timestamp\n"
                    "u1,i1,view,,2025-01-01T00:00:00Z,\nu2,i2,rating,4,2025-01-02T00:00:00Z,\n")
    table = read_text_table(path, tuple(HEADER))
    assert table.frame["user_id"].tolist() == ["u1", "u2"]
    assert table.frame["timestamp"].tolist() == ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"]
    assert ROW_ERROR not in table.frame and "trailing separator" in table.notes[0]


def test_semicolons_windows_1252_and_a_ragged_row(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes("user_id;item_id;event_type;value;timestamp\n"
                     "u1;i1;rating;4;2025-01-01\nu2;crème;view;;2025-01-02\nu3;i3;view\n".encode("cp1252"))
    table = read_text_table(path, tuple(HEADER))
    frame = table.frame.set_index("user_id")
    assert table.delimiter == ";" and table.encoding == "cp1252" and "not valid UTF-8" in table.notes[0]
    assert frame.loc["u2", "item_id"] == "crème" and frame.loc["u1", "value"] == "4"
    assert frame.loc["u3", ROW_ERROR] == "row has 3 fields; the header has 5"
    assert frame.loc["u3", SOURCE_ROW] == "u3;i3;view" and pd.isna(frame.loc["u1", ROW_ERROR])


def test_excel_unicode_text_is_utf16_with_tabs(tmp_path):
    path = tmp_path / "events.txt"
    path.write_bytes("user_id\titem_id\tevent_type\tvalue\ttimestamp\nü1\ti1\tview\t\t2025-01-01\n".encode("utf-16"))
    frame = read_text_table(path, tuple(HEADER)).frame
    assert frame.iloc[0].tolist() == ["ü1", "i1", "view", None, "2025-01-01"]


def test_missing_columns_name_the_file_what_is_missing_and_the_fix(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("customer,article\nc1,a1\n")
    with pytest.raises(DatasetError) as error:
        read_text_table(path, tuple(HEADER), hint="map them with --map")
    message = str(error.value)
    assert str(path) in message and "'user_id'" in message and "'customer'" in message
    assert message.endswith("map them with --map") and "\n" not in message


def test_an_empty_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match="empty"):
        read_text_table(tmp_path / "empty.csv")


def test_parquet_comes_back_as_text(tmp_path):
    pd.DataFrame({"user_id": [1, 2], "item_id": ["a", None], "value": [4.5, None]}).to_parquet(tmp_path / "e.parquet")
    frame = read_text_table(tmp_path / "e.parquet", ("user_id", "item_id")).frame
    assert frame["user_id"].tolist() == ["1", "2"] and frame["item_id"].tolist() == ["a", None]
    assert frame["value"].tolist() == ["4.5", None]


# --- any CSV a spreadsheet can export ---------------------------------------------------------------

cell = st.text(alphabet=string.ascii_letters + string.digits + " _.:-/,;|\"'éüß€", max_size=12)
row = st.fixed_dictionaries({name: cell for name in HEADER})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=25), delimiter=st.sampled_from([",", ";", "\t", "|"]),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
       newline=st.sampled_from(["\n", "\r\n"]), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
       trailing=st.sampled_from(["none", "every", "some"]), pad=st.booleans())
def test_every_row_comes_back_unshifted(tmp_path, rows, delimiter, quoting, newline, encoding, trailing, pad):
    frame = pd.DataFrame(rows, columns=HEADER)
    frame.insert(0, "row", [f"r{n}" for n in range(len(frame))])        # an id to match rows by
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=newline)
    writer.writerow(list(frame.columns) + ([""] if trailing == "every" else []))
    for n, values in enumerate(frame.itertuples(index=False)):
        values = [f"  {v} " if pad and v else v for v in values]
        writer.writerow(values + ([""] if trailing == "every" or (trailing == "some" and n % 2) else []))
    path = tmp_path / "export.csv"
    path.write_bytes(buffer.getvalue().encode(encoding))     # every character here exists in cp1252

    got = read_text_table(path, ("row", *HEADER)).frame
    assert len(got) == len(frame) and ROW_ERROR not in got                   # nothing lost or rejected
    got = got.set_index("row").loc[frame["row"]]
    for name in HEADER:
        assert got[name].tolist() == [v.strip() or None for v in frame[name]], name
