"""The behaviour landing area: feedback events posted to the serving API, waiting for the pipeline.

Layout: ``Dataset.landing_events_dir`` (``assets/<name>.landing/events/``, beside the DVC-tracked
dataset folder, which ``dvc repro`` replaces) holds CSV files ``events-<hash>.csv`` with the contract's
event columns plus ``event_id``, and ``_ledger.sqlite3``, the idempotency ledger (one row per event
id ever accepted, whatever happened to its file later).

Write order for one batch, and why nothing is lost or duplicated:

1. ``BEGIN IMMEDIATE`` on the ledger: one writer at a time, across threads and processes;
2. ``INSERT`` the batch's event ids: ids already present are duplicates (a retry) and are not
   written again; an id reused with different content is a conflict and the batch is refused;
3. write the new rows to ``events-<sha256 of their ids>.csv``: a hidden temp file, fsync, then
   ``os.replace`` (readers see the whole file or nothing), then fsync the folder;
4. ``COMMIT``; only then is the client told its events are stored.

A crash before 4 rolls the ledger back, and the client, not having been answered, retries: the same
ids give the same file name, so the retry overwrites the file instead of adding a second copy. A
retry that regroups the ids differently could leave an event in two files; ``read_landed_events``
keeps the first row per event id, and opening the landing area records in the ledger the ids of any
file it does not know yet, so a later retry of them is answered "duplicate". A crash after 4 loses
nothing: the rows were on disk before the commit.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import re
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import pandas as pd

from .contract import EVENT_COLUMNS, EVENT_TYPES, RATING_RANGE, Dataset, read_table

LANDED_COLUMNS = (*EVENT_COLUMNS, "event_id")
LEDGER_NAME = "_ledger.sqlite3"
FILE_PATTERN = "events-*.csv"
# The same rules the pipeline's Great Expectations suite applies (behaviour_events.json), so an
# event accepted here is not quarantined later.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
EVENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
EARLIEST = datetime(1990, 1, 1, tzinfo=timezone.utc)


class EventRejected(ValueError):
    """An event that breaks the contract; ``field`` names the offending field."""

    def __init__(self, field: str, message: str, index: int | None = None):
        super().__init__(message)
        self.field, self.message, self.index = field, message, index


class EventConflict(ValueError):
    """An event id that was already accepted with different content."""

    def __init__(self, event_ids: list[str]):
        super().__init__(f"event id(s) {event_ids} were already accepted with different content")
        self.event_ids = event_ids


@dataclass(frozen=True)
class LandingEvent:
    """A validated event, in the text form the landing CSV stores."""
    event_id: str
    user_id: str
    item_id: str
    event_type: str
    value: str | None        # None = empty cell (the contract's "1" for implicit events)
    timestamp: str           # ISO-8601 UTC, e.g. 2025-01-02T03:04:05.123456Z
    digest: str              # of what the client sent (a defaulted timestamp is not part of it)

    def row(self) -> dict:
        return {"user_id": self.user_id, "item_id": self.item_id, "event_type": self.event_type,
                "value": self.value, "timestamp": self.timestamp, "event_id": self.event_id}


@dataclass(frozen=True)
class StoreResult:
    stored: list[str]        # event ids written now
    duplicates: list[str]    # event ids accepted earlier (a retry): nothing written
    file: str | None         # the landing file written, if any


def validate_event(raw: dict, known_item_ids, known_user_ids=None, now: datetime | None = None,
                   index: int | None = None) -> LandingEvent:
    """Check one posted event against the contract; raises EventRejected with a clear message."""
    now = now or datetime.now(timezone.utc)

    def text(name: str, pattern: re.Pattern, what: str) -> str:
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise EventRejected(name, f"{name} is required", index)
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise EventRejected(name, f"{name} must be a string", index)
        value = str(value)
        if not pattern.fullmatch(value):
            raise EventRejected(name, f"{name} {value[:80]!r} is not {what}", index)
        return value

    event_id = text("event_id", EVENT_ID_PATTERN, "a well-formed id (letters, digits, _.:-; up to 128)")
    user_id = text("user_id", ID_PATTERN, "a well-formed id (letters, digits, _.:-; up to 64)")
    item_id = text("item_id", ID_PATTERN, "a well-formed id (letters, digits, _.:-; up to 64)")
    if item_id not in known_item_ids:
        raise EventRejected("item_id", f"item_id {item_id!r} is not in the catalogue", index)
    if known_user_ids is not None and user_id not in known_user_ids:
        raise EventRejected("user_id", f"user_id {user_id!r} is not in this dataset's users table", index)
    event_type = raw.get("event_type")
    if event_type not in EVENT_TYPES:
        raise EventRejected("event_type", f"event_type {str(event_type)[:40]!r} is not one of "
                                          f"{', '.join(EVENT_TYPES)}", index)
    value = _value(raw.get("value"), event_type, index)
    stamp, given = _timestamp(raw.get("timestamp"), now, index)
    digest = hashlib.sha256(json.dumps(
        [user_id, item_id, event_type, value, stamp if given else None]).encode()).hexdigest()
    return LandingEvent(event_id, user_id, item_id, event_type, value, stamp, digest)


def _value(value, event_type: str, index) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if event_type == "rating":
            raise EventRejected("value", "a rating needs a value", index)
        return None
    if isinstance(value, bool):
        raise EventRejected("value", "value must be a number", index)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EventRejected("value", f"value {str(value)[:40]!r} is not a number", index) from None
    if not math.isfinite(number):
        raise EventRejected("value", "value must be a finite number", index)
    low, high = RATING_RANGE
    if event_type == "rating" and not low <= number <= high:
        raise EventRejected("value", f"rating {number:g} is outside {low:g}-{high:g}", index)
    return repr(number)


def _timestamp(value, now: datetime, index) -> tuple[str, bool]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return _iso(now), False
    if not isinstance(value, str):
        raise EventRejected("timestamp", "timestamp must be an ISO-8601 string", index)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise EventRejected("timestamp", f"timestamp {value[:40]!r} is not ISO-8601", index) from None
    if parsed.tzinfo is None:
        raise EventRejected("timestamp", f"timestamp {value[:40]!r} has no time zone (use Z for UTC)", index)
    parsed = parsed.astimezone(timezone.utc)
    if parsed > now:
        raise EventRejected("timestamp", f"timestamp {value[:40]!r} lies in the future", index)
    if parsed < EARLIEST:
        raise EventRejected("timestamp", f"timestamp {value[:40]!r} is before 1990", index)
    return _iso(parsed), True


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventLanding:
    """Append-only, idempotent writer of one dataset's landing area (safe across threads/processes)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ledger_path = self.directory / LEDGER_NAME
        with contextlib.closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, digest TEXT NOT NULL, "
                       "file TEXT NOT NULL, received_at TEXT NOT NULL)")
        self.reconcile()

    @classmethod
    def for_dataset(cls, dataset: Dataset) -> "EventLanding":
        return cls(dataset.landing_events_dir)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.ledger_path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        return db

    def store(self, events: list[LandingEvent]) -> StoreResult:
        """Land the events not seen before, atomically with their ledger rows (see module doc)."""
        with contextlib.closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                new, duplicates, conflicts, batch_ids = [], [], [], {}
                for event in events:
                    if event.event_id in batch_ids:  # the same id twice in one batch
                        (duplicates if batch_ids[event.event_id] == event.digest else conflicts).append(event.event_id)
                        continue
                    batch_ids[event.event_id] = event.digest
                    found = db.execute("SELECT digest FROM events WHERE event_id = ?", (event.event_id,)).fetchone()
                    if found is None:
                        new.append(event)
                    elif found[0] in (event.digest, ""):  # "" = recovered from a file, content unknown
                        duplicates.append(event.event_id)
                    else:
                        conflicts.append(event.event_id)
                if conflicts:
                    raise EventConflict(conflicts)
                name = None
                if new:
                    name = "events-" + hashlib.sha256("\n".join(sorted(e.event_id for e in new)).encode()
                                                      ).hexdigest()[:32] + ".csv"
                    received = _iso(datetime.now(timezone.utc))
                    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                                   [(e.event_id, e.digest, name, received) for e in new])
                    self._write_file(name, [e.row() for e in new])
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        return StoreResult([e.event_id for e in new], duplicates, name)

    def _write_file(self, name: str, rows: list[dict]) -> None:
        target = self.directory / name
        tmp = self.directory / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=LANDED_COLUMNS, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.directory)

    def reconcile(self) -> int:
        """Record in the ledger the ids of landing files it does not know (a crash between the
        file and the commit); returns how many were added."""
        with contextlib.closing(self._connect()) as db:
            known_files = {row[0] for row in db.execute("SELECT DISTINCT file FROM events")}
            missing = [p for p in sorted(self.directory.glob(FILE_PATTERN)) if p.name not in known_files]
            if not missing:
                return 0
            received = _iso(datetime.now(timezone.utc))
            rows = [(event_id, "", path.name, received) for path in missing
                    for event_id in _file_event_ids(path)]
            db.execute("BEGIN IMMEDIATE")
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", rows)
            added = db.total_changes - before
            db.execute("COMMIT")
            return added

    def count(self) -> int:
        with contextlib.closing(self._connect()) as db:
            return db.execute("SELECT count(*) FROM events").fetchone()[0]


def _file_event_ids(path: Path) -> Iterable[str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [row["event_id"] for row in csv.DictReader(handle) if row.get("event_id")]
    except (OSError, KeyError, csv.Error):
        return []


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_landed_events(dataset: Dataset) -> pd.DataFrame:
    """Every landed event as text (like ``Dataset.read_events``), columns EVENT_COLUMNS + event_id,
    one row per event id (the first file in name order wins), in file order."""
    directory = dataset.landing_events_dir
    files = sorted(directory.glob(FILE_PATTERN)) if directory.is_dir() else []
    frames = [read_table(path, LANDED_COLUMNS) for path in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LANDED_COLUMNS})
    landed = pd.concat(frames, ignore_index=True)[list(LANDED_COLUMNS)]
    # an event without an id (a bulk loader's row) cannot be a retry of another: keep every one
    repeated = landed["event_id"].notna() & (landed["event_id"] != "") & landed.duplicated("event_id")
    return landed[~repeated].reset_index(drop=True)
