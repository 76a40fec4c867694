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
import os
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..times import iso_utc
from .contract import FILE_PATTERN, LANDED_COLUMNS, Dataset
from .rules import LandingEvent

LEDGER_NAME = "_ledger.sqlite3"


class EventConflict(ValueError):
    """An event id that was already accepted with different content."""

    def __init__(self, event_ids: list[str]):
        super().__init__(f"event id(s) {event_ids} were already accepted with different content")
        self.event_ids = event_ids


@dataclass(frozen=True)
class StoreResult:
    stored: list[str]        # event ids written now
    duplicates: list[str]    # event ids accepted earlier (a retry): nothing written
    file: str | None         # the landing file written, if any


class EventLanding:
    """Append-only, idempotent writer of one dataset's landing area (safe across threads/processes)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ledger_path = self.directory / LEDGER_NAME
        self.repairs: list[str] = []
        try:
            self._create()
        except sqlite3.DatabaseError as problem:   # a damaged ledger: rebuild it from the files
            if isinstance(problem, sqlite3.OperationalError):
                raise                               # locked or unreachable is not damaged: never rebuild then
            aside = self.ledger_path.with_name(f"{LEDGER_NAME}.corrupt-{uuid.uuid4().hex[:8]}")
            os.replace(self.ledger_path, aside)
            for suffix in ("-journal", "-wal", "-shm"):
                Path(f"{self.ledger_path}{suffix}").unlink(missing_ok=True)
            self._create()
            self.repairs.append(f"the ledger was unreadable ({problem}); moved to {aside.name} and "
                                "rebuilt from the landing files")
        adopted = self.reconcile()
        if adopted and self.repairs:
            self.repairs.append(f"{adopted} event ids adopted from the landing files")

    def _create(self) -> None:
        with contextlib.closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, digest TEXT NOT NULL, "
                       "file TEXT NOT NULL, received_at TEXT NOT NULL)")
            db.execute("SELECT count(*) FROM events").fetchone()   # reads the file: a damaged one raises

    @classmethod
    def for_dataset(cls, dataset: Dataset) -> EventLanding:
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
                    received = iso_utc()
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
            received = iso_utc()
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
