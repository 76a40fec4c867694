"""Reading tables as shops and spreadsheets export them, without losing or shifting a row.

A CSV export may use ``,`` ``;`` ``|`` or a tab, quote or not, carry a byte-order mark, be UTF-8,
Windows-1252 or UTF-16 (Excel's "Unicode text"), end every data row with a stray separator, or have
a row with too many or too few fields. Here every data row comes back, as text:

- the encoding is UTF-8 (with or without a BOM) or UTF-16 by its BOM; a file that is not valid
  UTF-8 is read as Windows-1252 (then Latin-1, which decodes any byte), and the table says so;
- the delimiter is the candidate that splits the header into the most fields;
- a row whose extra fields are all empty is a trailing-separator artefact: they are dropped;
- any other row whose field count differs from the header's is kept with ``row_error`` saying so
  and its raw fields in ``source_row``, so validation quarantines it with that reason;
- cells are stripped of surrounding white space; an empty cell is None.

Parquet files are read as they are, every column as text. Missing required columns are a
``DatasetError`` naming the file, what is missing, what is there and how to map it.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

DELIMITERS = (",", ";", "\t", "|")
ROW_ERROR, SOURCE_ROW = "row_error", "source_row"
csv.field_size_limit(16 * 2**20)   # a long free-text description is data, not an attack


class DatasetError(ValueError):
    """A dataset folder or table does not follow the contract."""


@dataclass
class TextTable:
    frame: pd.DataFrame                 # every data row as text; ROW_ERROR/SOURCE_ROW when any is bad
    encoding: str = "utf-8"
    delimiter: str = ","
    notes: list[str] = field(default_factory=list)

    @property
    def bad_rows(self) -> int:
        return int(self.frame[ROW_ERROR].notna().sum()) if ROW_ERROR in self.frame else 0


def read_text_table(path: Path, required: tuple[str, ...] = (), delimiter: str | None = None,
                    hint: str = "") -> TextTable:
    """``path`` (.csv/.tsv/.txt or .parquet) as text; raises DatasetError with a fix if it cannot
    be a table with the ``required`` columns. ``hint`` is appended to that error (e.g. --map)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        table = TextTable(_read_parquet(path), encoding="parquet", delimiter="")
    else:
        table = _read_delimited(path, delimiter)
    missing = [column for column in required if column not in table.frame.columns]
    if missing:
        raise DatasetError(f"{path}: required column(s) {missing} missing; it has {list(table.frame.columns)}"
                           + (f". {hint}" if hint else ""))
    return table


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DatasetError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    text = frame.astype(object).where(frame.notna(), None)
    for column in text.columns:
        text[column] = [None if v is None else _cell(str(v)) for v in text[column]]
    return text


def _read_delimited(path: Path, delimiter: str | None) -> TextTable:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    text, encoding, notes = decode(raw)
    if not text.strip():
        raise DatasetError(f"{path}: the file is empty (a table needs at least a header row)")
    delimiter = delimiter or sniff_delimiter(text)
    header, extra = _header(text, delimiter)
    if len(set(header)) != len(header) or not all(header):
        raise DatasetError(f"{path}: the header row {header} has empty or repeated column names")
    frame, misfits = _parse(text, header, extra, delimiter)
    frame = _with_misfits(frame, misfits, header, delimiter, notes)
    return TextTable(frame, encoding, delimiter, notes)


def _header(text: str, delimiter: str) -> tuple[list[str], int]:
    """Column names, and how many empty names trail them ("a,b,c," has one: an export artefact)."""
    first = next(line for line in text.splitlines() if line.strip())
    names = [c.strip() for c in next(csv.reader([first], delimiter=delimiter))]
    extra = 0
    while names and not names[-1]:
        names.pop()
        extra += 1
    return names, extra


def _parse(text: str, header: list[str], extra: int, delimiter: str) -> tuple[pd.DataFrame, list[str]]:
    """pyarrow's CSV reader (fast, quote- and newline-aware) for the rows that fit the header;
    the raw text of those that do not is returned for a closer look."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pa_csv

    misfits: list[str] = []

    def misfit(row) -> str:
        misfits.append(row.text)
        return "skip"

    names = header + [f"__extra{i}" for i in range(extra)]
    table = pa_csv.read_csv(
        io.BytesIO(text.encode("utf-8")),
        read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=misfit),
        convert_options=pa_csv.ConvertOptions(column_types={n: pa.string() for n in names}, null_values=[""],
                                              strings_can_be_null=True, quoted_strings_can_be_null=True))
    columns = {}
    for name in names:
        trimmed = pc.utf8_trim_whitespace(table[name])
        columns[name] = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    frame = pa.table(columns).to_pandas() if len(table) else pd.DataFrame({n: pd.Series(dtype=object) for n in names})
    for i in range(extra):     # a trailing separator on the header (and usually on every row)
        filled = frame[f"__extra{i}"].notna()
        misfits += [delimiter.join(_text(v) for v in row) for row in frame[filled].itertuples(index=False)]
        frame = frame[~filled].drop(columns=f"__extra{i}")
    return frame.reset_index(drop=True), misfits


def _text(value) -> str:
    return "" if value is None else str(value)


def _with_misfits(frame: pd.DataFrame, misfits: list[str], header: list[str], delimiter: str,
                  notes: list[str]) -> pd.DataFrame:
    """Rows whose field count differs from the header's: a trailing-separator artefact is fixed,
    anything else is kept with ROW_ERROR and its raw text (so validation quarantines it)."""
    if not misfits:
        return frame
    width, kept, trimmed = len(header), [], 0
    for raw in misfits:
        fields = next(csv.reader([raw], delimiter=delimiter), [])
        if len(fields) > width and not any(f.strip() for f in fields[width:]):
            kept.append([_cell(f) for f in fields[:width]] + [None, None])
            trimmed += 1
        else:
            padded = ([_cell(f) for f in fields] + [None] * width)[:width]
            kept.append(padded + [f"row has {len(fields)} fields; the header has {width}", raw])
    if trimmed:
        notes.append(f"{trimmed} row(s) ended with empty extra fields (a trailing separator): dropped")
    extra = pd.DataFrame(kept, columns=header + [ROW_ERROR, SOURCE_ROW], dtype=object)
    if extra[ROW_ERROR].isna().all():
        extra = extra.drop(columns=[ROW_ERROR, SOURCE_ROW])
    joined = pd.concat([frame, extra], ignore_index=True)
    return joined.astype(object).where(joined.notna(), None)


def decode(raw: bytes) -> tuple[str, str, list[str]]:
    """(text, encoding, notes): UTF-16/UTF-8 by BOM, else UTF-8, else Windows-1252, else Latin-1."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16", []
    try:
        return raw.decode("utf-8-sig"), "utf-8", []
    except UnicodeDecodeError as exc:
        note = f"not valid UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start})"
    for encoding in ("cp1252", "latin-1"):
        try:
            return raw.decode(encoding), encoding, [f"{note}: read as {encoding}"]
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")


def sniff_delimiter(text: str) -> str:
    """The candidate that splits the first non-empty line into the most fields (quotes honoured)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: len(next(csv.reader([first], delimiter=d), [])) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (counts[d], -DELIMITERS.index(d)))
    return best if counts[best] > 1 else ","


def _cell(value: str) -> str | None:
    value = value.strip()
    return value if value else None


def unreadable_rows(path: Path, columns: tuple[str, ...], reason: str) -> pd.DataFrame:
    """Every non-blank line of a file that is not a readable table, as a row that validation will
    quarantine: the columns empty (nothing is guessed), ``row_error`` the reason, ``source_row``
    the line itself. An empty or unreadable file gives no rows."""
    try:
        text = decode(Path(path).read_bytes())[0]
    except OSError:
        text = ""
    lines = [line for line in text.splitlines() if line.strip()]
    frame = pd.DataFrame({c: pd.Series([None] * len(lines), dtype=object) for c in columns})
    frame[ROW_ERROR] = pd.Series([reason] * len(lines), dtype=object)
    frame[SOURCE_ROW] = pd.Series(lines, dtype=object)
    return frame
