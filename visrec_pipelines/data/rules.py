"""The contract's rules, read from the Great Expectations suites (``great_expectations/expectations``).

The suites are the one place the rules are written: the pipeline validates whole tables with them
(``quality.suites``, through GX), and the serving API checks each posted event against the very
same values derived here (id patterns, event types, rating range, earliest time stamp), so an event
accepted at the door is never quarantined later. Plain JSON reads: no GX import.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from ..times import iso_utc

SUITES_DIR = Path(__file__).resolve().parents[2] / "great_expectations" / "expectations"
EVENTS_SUITE = "behaviour_events"
ITEMS_SUITE = "item_catalogue"


def suite_path(name: str, suites_dir: Path | None = None) -> Path:
    return (suites_dir or SUITES_DIR) / f"{name}.json"


@lru_cache(maxsize=8)
def _read_suite(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"expectation suite not found at {path}")
    return path.read_text()


def load_suite_spec(name: str, suites_dir: Path | None = None) -> dict:
    """The suite as plain JSON (Dagster reads check names from it at load time)."""
    return json.loads(_read_suite(suite_path(name, suites_dir)))


def check_names(name: str, suites_dir: Path | None = None) -> list[str]:
    return [e["meta"]["check_name"] for e in load_suite_spec(name, suites_dir)["expectations"]]


def rule(suite: str, check_name: str) -> dict:
    """The kwargs of one expectation of a suite, by its check name."""
    for expectation in load_suite_spec(suite)["expectations"]:
        if expectation["meta"]["check_name"] == check_name:
            return expectation["kwargs"]
    raise KeyError(f"suite {suite!r} has no expectation {check_name!r}")


EVENT_TYPES = tuple(rule(EVENTS_SUITE, "event_type_known")["value_set"])
RATING_RANGE = (float(rule(EVENTS_SUITE, "rating_in_range")["min_value"]),
                float(rule(EVENTS_SUITE, "rating_in_range")["max_value"]))
USER_ID_PATTERN = re.compile(rule(EVENTS_SUITE, "user_id_well_formed")["regex"])
ITEM_ID_PATTERN = re.compile(rule(ITEMS_SUITE, "item_id_well_formed")["regex"])
EARLIEST = datetime.fromtimestamp(rule(EVENTS_SUITE, "timestamp_after_1990")["min_value"], tz=UTC)
# event ids exist only where events are posted (the pipeline's tables have none)
EVENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class EventRejected(ValueError):
    """An event that breaks the contract; ``field`` names the offending field."""

    def __init__(self, field: str, message: str, index: int | None = None):
        super().__init__(message)
        self.field, self.message, self.index = field, message, index


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


def validate_event(raw: dict, known_item_ids, known_user_ids=None, now: datetime | None = None,
                   index: int | None = None) -> LandingEvent:
    """Check one posted event against the contract; raises EventRejected with a clear message."""
    now = now or datetime.now(UTC)

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
    user_id = text("user_id", USER_ID_PATTERN, "a well-formed id (letters, digits, _.:-; up to 64)")
    item_id = text("item_id", ITEM_ID_PATTERN, "a well-formed id (letters, digits, _.:-; up to 64)")
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
        return iso_utc(now), False
    if not isinstance(value, str):
        raise EventRejected("timestamp", "timestamp must be an ISO-8601 string", index)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise EventRejected("timestamp", f"timestamp {value[:40]!r} is not ISO-8601", index) from None
    if parsed.tzinfo is None:
        raise EventRejected("timestamp", f"timestamp {value[:40]!r} has no time zone (use Z for UTC)", index)
    parsed = parsed.astimezone(UTC)
    if parsed > now:
        raise EventRejected("timestamp", f"timestamp {value[:40]!r} lies in the future", index)
    if parsed < EARLIEST:
        raise EventRejected("timestamp", f"timestamp {value[:40]!r} is before {EARLIEST.year}", index)
    return iso_utc(parsed), True
