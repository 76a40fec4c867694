"""Time stamps, one way everywhere: unix seconds as float (NaN = unknown), ISO-8601 UTC as text.

One parser reads every common form, for the importers and for the pipeline's validation alike:

- ISO-8601 / RFC 3339 date-times, with an offset or without one (= UTC), date only (= midnight
  UTC); a trailing ``Z``, ``z``, ``UTC`` or ``GMT`` means UTC (BigQuery-style exports);
- numbers are unix time. The unit is decided once per column, by the magnitude most of its numbers
  have (below 1e11 seconds, 1e14 milliseconds, 1e17 microseconds, else nanoseconds), so one odd
  value cannot flip a column's unit;
- or a declared format: ``iso``, ``unix_s``, ``unix_ms``, ``unix_us``, ``unix_ns`` or a strptime
  pattern such as ``%d/%m/%Y`` (day-first and month-first dates are ambiguous: never guessed).

A value that cannot be parsed is NaT/NaN (the pipeline quarantines it with its reason); the
importers write it verbatim. Work happens on the distinct values (event logs repeat their dates),
vectorised, so millions of rows take seconds.
"""
from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
AUTO, ISO = "auto", "iso"
UNITS = {"unix_s": 1, "unix_ms": 1_000, "unix_us": 1_000_000, "unix_ns": 1_000_000_000}
# magnitude limits of unix time in s, ms, µs (years ~5138); anything larger is ns
UNIT_LIMITS = (1e11, 1e14, 1e17)
NAT = np.datetime64("NaT", "ns")
_NAT_INT = np.iinfo(np.int64).min        # NaT's bit pattern
_UTC_SUFFIX = r"\s*(?:Z|z|UTC|GMT)$"
_ISO_FAST = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d")
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_MAX_NS = 9.2e18    # datetime64[ns] spans the years 1677-2262


def unix_seconds(stamps) -> np.ndarray:
    """Date-times (tz-aware, or naive = UTC) → float unix seconds; NaT → NaN."""
    parsed = pd.to_datetime(pd.Series(stamps), utc=True)
    return ((parsed - EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


def check_format(fmt: str | None) -> str:
    """The declared format, normalised; ValueError naming the choices if it is none of them."""
    fmt = (fmt or AUTO).strip()
    if fmt.lower() in (AUTO, ISO, *UNITS):
        return fmt.lower()
    if "%" in fmt:
        return fmt
    raise ValueError(f"unknown timestamp format {fmt!r}: use auto, iso, {', '.join(UNITS)} "
                     f"or a strptime pattern such as %d/%m/%Y")


def parse_datetimes(values, fmt: str | None = None) -> np.ndarray:
    """Values (text, numbers, None) → datetime64[ns] in UTC; NaT where a value cannot be parsed."""
    codes, _, parsed = _parse_distinct(values, fmt)
    return np.append(parsed, NAT)[codes]          # code -1 (missing) → the NaT appended


def parse_timestamps(text, fmt: str | None = None) -> np.ndarray:
    """Values → float unix seconds; NaN where they cannot be parsed (see the module's forms)."""
    parsed = parse_datetimes(text, fmt)
    seconds = parsed.astype("int64") / 1e9
    return np.where(np.isnat(parsed), np.nan, seconds)


def contract_timestamps(values, fmt: str | None = None) -> pd.Series:
    """Values → the contract's ISO-8601 UTC text (``2025-01-02T03:04:05Z``, with a fraction only
    when the column has one); a value that cannot be parsed is kept verbatim, None stays None."""
    codes, uniques, parsed = _parse_distinct(values, fmt)
    text = np.asarray(uniques, dtype=object).copy()
    good = ~np.isnat(parsed)
    if good.any():
        ns = parsed[good].astype("int64")
        unit = next((u for u, step in (("s", 10**9), ("ms", 10**6), ("us", 10**3)) if not (ns % step).any()), "ns")
        text[good] = np.char.add(np.datetime_as_string(parsed[good].astype(f"M8[{unit}]"), unit=unit), "Z")
    return pd.Series(np.append(text, None)[codes], dtype=object)


def _parse_distinct(values, fmt: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, distinct values, their datetime64[ns]): event logs repeat their time stamps, so each
    distinct value is parsed once; codes (-1 = missing) map them back to the rows."""
    fmt = check_format(fmt)
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    if not len(uniques):
        return codes, np.asarray(uniques, dtype=object), np.full(0, NAT)
    text = pc.utf8_trim_whitespace(pa.array(pd.Series(uniques, dtype=object).astype(str), pa.string()))
    is_number = pc.match_substring_regex(text, _NUMBER).to_numpy(zero_copy_only=False)
    numbers = np.full(len(text), np.nan)
    numbers[is_number] = pc.cast(text.filter(is_number), pa.float64()).to_numpy()
    numbers[~np.isfinite(numbers)] = np.nan
    if fmt in UNITS:
        parsed = _from_unix(numbers, UNITS[fmt])
    elif fmt == ISO:
        parsed = _from_iso(text)
    elif fmt == AUTO:   # numbers are unix time in the column's unit, the rest ISO-8601
        parsed = np.full(len(text), NAT)
        parsed[~is_number] = _from_iso(text.filter(~is_number))
        parsed[is_number] = _from_unix(numbers[is_number], _column_unit(numbers, codes))
    else:
        parsed = _naive_utc(pd.to_datetime(text.to_pandas(), format=fmt, errors="coerce", utc=True))
    return codes, np.asarray(uniques, dtype=object), parsed


def _from_iso(text: pa.Array) -> np.ndarray:
    """ISO-8601: the two commonest shapes by Arrow's strptime (fast), the rest by pandas' parser."""
    marked = pc.replace_substring_regex(text, _UTC_SUFFIX, "+00:00")
    parsed = np.full(len(marked), NAT)
    for shape in _ISO_FAST:
        left = np.isnat(parsed)
        if not left.any():
            break
        fast = pc.strptime(marked.filter(left), format=shape, unit="ns", error_is_null=True)
        parsed[left] = fast.cast(pa.int64()).fill_null(_NAT_INT).to_numpy().view("M8[ns]")
    left = np.isnat(parsed)
    if left.any():
        rest = pd.to_datetime(marked.filter(left).to_pandas(), errors="coerce", utc=True, format="ISO8601")
        parsed[left] = _naive_utc(rest)
    return parsed


def _naive_utc(parsed: pd.Series) -> np.ndarray:
    return parsed.dt.tz_localize(None).to_numpy("M8[ns]")


def _column_unit(numbers: np.ndarray, codes: np.ndarray) -> int:
    """Units per second that most of the column's numeric rows (not distinct values) have by magnitude."""
    classes = np.searchsorted(UNIT_LIMITS, np.abs(np.nan_to_num(numbers)), side="right")
    rows = codes[codes >= 0]
    rows = classes[rows[~np.isnan(numbers[rows])]]
    if not len(rows):
        return 1
    return (1, 1_000, 1_000_000, 1_000_000_000)[int(np.bincount(rows, minlength=4).argmax())]


def _from_unix(numbers: np.ndarray, per_second: int) -> np.ndarray:
    """Unix time in 1/per_second units → datetime64[ns]; exact for whole numbers (in int64), to the
    microsecond for fractions (a float's precision); out of datetime64's range → NaT."""
    scale = 10**9 // per_second
    whole = np.isfinite(numbers) & (numbers == np.trunc(numbers)) & (np.abs(numbers) < 2**53)
    in_range = np.isfinite(numbers) & (np.abs(numbers) * scale < _MAX_NS)
    ns = np.zeros(len(numbers), dtype=np.int64)
    ns[whole & in_range] = numbers[whole & in_range].astype(np.int64) * scale
    fraction = in_range & ~whole
    ns[fraction] = np.round(numbers[fraction] * scale / 1000).astype(np.int64) * 1000
    return np.where(in_range, ns.view("M8[ns]"), NAT)


def iso_utc(moment: datetime | float | None = None, precision: str = "microseconds") -> str:
    """``2025-01-02T03:04:05.123456Z`` (now by default; a float is unix seconds)."""
    if moment is None:
        moment = datetime.now(UTC)
    elif not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(float(moment), tz=UTC)
    text = moment.astimezone(UTC).isoformat(timespec=precision)
    return text.replace("+00:00", "Z")
