"""Where POST /events puts feedback: the dataset's landing area (``data.landing``), opened on first
use and kept for the life of the app, and the dataset's users table (events of users it does not
list would be quarantined by the pipeline), read again whenever the file changes.

Neither may turn a request into a 500. A users table that cannot be read (empty, no user_id column)
answers 503 naming the problem until the file changes; a ledger found damaged while the server runs
is set aside and rebuilt from the landing files (``EventLanding`` does that when it opens), and the
batch is stored then. ``status()`` says what is wrong now and what was repaired.
"""
import sqlite3
import threading
from collections import deque

from ..data.contract import Dataset
from ..data.landing import EventLanding, StoreResult
from ..data.rules import LandingEvent
from .problems import Unavailable, public


class EventInbox:
    def __init__(self):
        self._landing: EventLanding | None = None
        self._lock = threading.Lock()
        # (users.csv signature, its ids or None, the problem reading it or None)
        self._users: tuple[tuple, frozenset | None, str | None] | None = None
        self.repairs: deque[str] = deque(maxlen=20)

    def landing(self, dataset: Dataset) -> EventLanding:
        with self._lock:
            if self._landing is None:
                try:
                    landing = EventLanding.for_dataset(dataset)
                except (OSError, sqlite3.Error) as exc:
                    raise Unavailable("the landing area for feedback cannot be opened: "
                                      + public(exc, [dataset.root.parent])) from None
                self.repairs.extend(public(r, [dataset.root.parent]) for r in landing.repairs)
                self._landing = landing
            return self._landing

    def store(self, dataset: Dataset, events: list[LandingEvent]) -> StoreResult:
        """Land the events (``EventLanding.store``); a ledger damaged since it was opened is
        rebuilt once, then the batch stored (its ids already in landed files count as duplicates)."""
        for attempt in range(2):
            landing = self.landing(dataset)
            try:
                return landing.store(events)
            except sqlite3.OperationalError as exc:      # locked or read-only: nothing is damaged
                raise Unavailable("the feedback ledger is busy or not writable: " + public(exc)) from None
            except sqlite3.DatabaseError as exc:         # not a database any more: rebuild it
                if attempt:
                    raise Unavailable("the feedback ledger is damaged and could not be rebuilt: "
                                      + public(exc)) from None
                with self._lock:
                    if self._landing is landing:
                        self._landing = None
        raise AssertionError("unreachable")

    def known_users(self, dataset: Dataset) -> frozenset | None:
        """users.csv ids when the dataset has one, else None (any well-formed user id); Unavailable
        when it cannot be read (until the file changes)."""
        path = dataset.users_path
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unavailable("the dataset's users table cannot be read: " + public(exc, [dataset.root])) from None
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._users is None or self._users[0] != signature:
            try:
                users = dataset.read_users()
                ids, problem = frozenset(users["user_id"].dropna()) if users is not None else None, None
            except Exception as exc:    # DatasetError (empty, no user_id), undecodable, vanished ...
                ids, problem = None, "the dataset's users table cannot be read: " + public(exc, [dataset.root])
            self._users = (signature, ids, problem)
        if self._users[2] is not None:
            raise Unavailable(self._users[2])
        return self._users[1]

    def status(self) -> dict:
        users = self._users
        return {"problem": users[2] if users is not None else None, "repairs": list(self.repairs)}
