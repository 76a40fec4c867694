"""JSON-lines files as shops' dumps come: plain or gzipped, one JSON object per line, or (older
dumps) one Python dict literal per line with single quotes. Every non-blank line becomes a row:
a line that is neither is kept with ``row_error`` and its text in ``source_row``, for the pipeline
to quarantine, never dropped."""
from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import pandas as pd

from ..tables import ROW_ERROR, SOURCE_ROW, DatasetError

GZIP_MAGIC = b"\x1f\x8b"


def read_records(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """(a row per non-blank line, notes); values as parsed (see ``nested_as_json``)."""
    path = Path(path)
    rows, notes, literal, fallback = [], [], 0, 0
    try:
        with _open(path) as lines:
            for number, raw in enumerate(lines, start=1):
                text, fell_back = _decode(raw)
                fallback += fell_back
                if not text.strip():
                    continue
                record, was_literal = _parse(text)
                literal += was_literal
                if not isinstance(record, dict):
                    record = {ROW_ERROR: f"line {number} is not a JSON object or Python dict", SOURCE_ROW: text[:2000]}
                rows.append(record)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from exc
    if literal:
        notes.append(f"{literal:,} line(s) were Python dict literals (single quotes), not JSON: read as such")
    if fallback:
        notes.append(f"{fallback:,} line(s) were not valid UTF-8: read as Windows-1252")
    return (pd.DataFrame.from_records(rows) if rows else pd.DataFrame()), notes


def nested_as_json(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists and dicts (related products, sales ranks, styles) as JSON text, so they are kept but
    never mistaken for labels."""
    frame = frame.copy()
    for name in frame.columns:
        if frame[name].dtype == object and frame[name].map(lambda v: isinstance(v, (list, dict))).any():
            frame[name] = frame[name].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return frame


def _open(path: Path):
    with open(path, "rb") as probe:
        zipped = probe.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if zipped else open(path, "rb")


def _decode(raw: bytes) -> tuple[str, int]:
    try:
        return raw.decode("utf-8-sig"), 0
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), 1


def _parse(text: str) -> tuple[object, int]:
    """(the record or None, 1 if it was a Python literal)."""
    try:
        return json.loads(text), 0
    except ValueError:
        pass
    try:
        return ast.literal_eval(text.strip()), 1
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None, 0
