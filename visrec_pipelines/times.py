"""Time stamps, one way everywhere: unix seconds as float (NaN = unknown), ISO-8601 UTC as text."""
from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def unix_seconds(stamps) -> np.ndarray:
    """Date-times (tz-aware, or naive = UTC) → float unix seconds; NaT → NaN."""
    parsed = pd.to_datetime(pd.Series(stamps), utc=True)
    return ((parsed - EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


def parse_timestamps(text: pd.Series) -> np.ndarray:
    """Text → float unix seconds; NaN where the text is not an ISO-8601 / RFC 3339 date-time."""
    return unix_seconds(pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601"))


def iso_utc(moment: datetime | float | None = None, precision: str = "microseconds") -> str:
    """``2025-01-02T03:04:05.123456Z`` (now by default; a float is unix seconds)."""
    if moment is None:
        moment = datetime.now(UTC)
    elif not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(float(moment), tz=UTC)
    text = moment.astimezone(UTC).isoformat(timespec=precision)
    return text.replace("+00:00", "Z")
