"""What the pipeline will set aside, said at import time, from the very same rules.

The Great Expectations suites (``data.rules``) hold only column-map rules, so they are evaluated
here directly with pandas, fast and without GX: each rule's failing rows, a row that could not be
read failing that rule alone (as ``quality.suites`` counts it), orphans (rows failing only
referential rules: unknown items or users) apart from malformed rows, and the exact repeats the
pipeline will merge into one event with a quantity. Stored in dataset.json, printed by the CLI.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..times import parse_timestamps
from .rules import EVENTS_SUITE, ITEMS_SUITE, load_suite_spec
from .tables import ROW_ERROR

ROW_LEVEL = "row_well_formed"     # a row the reader could not read breaks this rule only
REFERENTIAL = "referential"
EXAMPLES = 3
# examples of a derived column's failures are shown from the column it was derived from
SHOWN_FROM = {"value_number": "value", "timestamp_epoch": "timestamp", "is_repeat": "item_id"}


def import_report(items: pd.DataFrame, events: pd.DataFrame, users: pd.DataFrame | None = None,
                  notes: list[str] = (), now: float | None = None) -> dict:
    parameters = {"known_item_ids": items["item_id"].dropna().unique(),
                  "now_epoch": time.time() if now is None else now}
    if users is not None:
        parameters["known_user_ids"] = users["user_id"].dropna().unique()
    number = pd.to_numeric(events["value"], errors="coerce")
    derived = _with_row_error(events).assign(value_number=number.where(np.isfinite(number)),
                                             timestamp_epoch=parse_timestamps(events["timestamp"]))
    failures, skipped = suite_failures(derived, EVENTS_SUITE, parameters)
    report = {"events": _summary(derived, failures, skipped, EVENTS_SUITE)}
    accepted = ~np.any(list(failures.values()), axis=0) if failures else np.ones(len(events), bool)
    report["events"]["exact_repeats"] = int(events[accepted].duplicated(subset=["user_id", "item_id",
                                            "event_type", "value", "timestamp"]).sum())
    repeated = items["item_id"].duplicated() & items["item_id"].notna()
    derived_items = _with_row_error(items).assign(is_repeat=repeated)
    report["items"] = _summary(derived_items, *suite_failures(derived_items, ITEMS_SUITE, {}), ITEMS_SUITE)
    if users is not None:
        report["users"] = {"rows": len(users), "unreadable": _unreadable(users),
                           "repeated_ids": int(users["user_id"].dropna().duplicated().sum())}
    report["notes"] = list(notes)
    return report


def suite_failures(frame: pd.DataFrame, suite: str, parameters: dict) -> tuple[dict[str, np.ndarray], list]:
    """check name -> which rows break it; and the checks not evaluated (a parameter is missing)."""
    failures, skipped = {}, []
    for expectation in load_suite_spec(suite)["expectations"]:
        name = expectation["meta"]["check_name"]
        needed = [v["$PARAMETER"] for v in expectation["kwargs"].values() if isinstance(v, dict) and "$PARAMETER" in v]
        if any(p not in parameters for p in needed):
            skipped.append(name)
            continue
        failures[name] = _breaks(frame, expectation, parameters)
    if ROW_LEVEL in failures:
        unreadable = failures[ROW_LEVEL]
        failures = {n: (m if n == ROW_LEVEL else m & ~unreadable) for n, m in failures.items()}
    return failures, skipped


def _breaks(frame: pd.DataFrame, expectation: dict, parameters: dict) -> np.ndarray:
    """The rows breaking one column-map expectation (GX semantics: a missing value breaks only
    the null rules; ``row_condition`` limits the rows it applies to)."""
    kwargs = {k: parameters[v["$PARAMETER"]] if isinstance(v, dict) and "$PARAMETER" in v else v
              for k, v in expectation["kwargs"].items()}
    column = frame[kwargs["column"]]
    present = column.notna()
    kind = expectation["type"]
    if kind == "expect_column_values_to_be_null":
        bad = present
    elif kind == "expect_column_values_to_not_be_null":
        bad = ~present
    elif kind == "expect_column_values_to_match_regex":
        codes, uniques = pd.factorize(column)        # ids repeat: match each distinct one once
        matches = pd.Series(uniques, dtype=object).astype(str).str.contains(kwargs["regex"]).to_numpy(bool)
        bad = present.to_numpy() & ~np.append(matches, True)[codes]     # code -1 (missing) → the True
    elif kind == "expect_column_values_to_be_in_set":
        bad = present & ~column.isin(kwargs["value_set"])
    elif kind == "expect_column_values_to_be_between":
        value = pd.to_numeric(column, errors="coerce")
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        below = value < low if low is not None else False
        bad = present & (below | (value > high if high is not None else False))
    else:
        raise ValueError(f"{expectation['meta']['check_name']}: rule type {kind} is not evaluated at import")
    if kwargs.get("row_condition"):
        bad = bad & frame.eval(kwargs["row_condition"], engine="python")
    return np.asarray(bad, dtype=bool)


def _summary(frame: pd.DataFrame, failures: dict, skipped: list, suite: str) -> dict:
    spec = {e["meta"]["check_name"]: e for e in load_suite_spec(suite)["expectations"]}
    any_failure = np.any(list(failures.values()), axis=0) if failures else np.zeros(len(frame), bool)
    broken = [failures[n] for n in failures if spec[n]["meta"].get("kind") != REFERENTIAL]
    malformed = np.any(broken, axis=0) if broken else np.zeros(len(frame), bool)
    checks = {}
    for name, mask in failures.items():
        if mask.any():
            column = SHOWN_FROM.get(spec[name]["kwargs"]["column"], spec[name]["kwargs"]["column"])
            shown = frame.loc[mask, column].dropna().astype(str).drop_duplicates().head(EXAMPLES)
            checks[name] = {"rows": int(mask.sum()), "reason": spec[name]["meta"]["reason"],
                            "examples": [value[:80] for value in shown]}
    return {"rows": len(frame), "set_aside": int(any_failure.sum()),
            "malformed": int(malformed.sum()), "orphans": int((any_failure & ~malformed).sum()),
            "unreadable": _unreadable(frame), "checks": checks, "not_checked": skipped}


def _with_row_error(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if ROW_ERROR in frame else frame.assign(**{ROW_ERROR: None})


def _unreadable(frame: pd.DataFrame) -> int:
    return int(frame[ROW_ERROR].notna().sum()) if ROW_ERROR in frame else 0


def report_lines(report: dict) -> list[str]:
    """The report in a few lines for the terminal."""
    events, items = report["events"], report["items"]
    lines = [f"import report: of {events['rows']:,} events the pipeline will set aside "
             f"{events['malformed']:,} malformed and {events['orphans']:,} orphans; "
             f"{events['exact_repeats']:,} exact repeats will count as quantity, not be rejected"]
    lines += _check_lines(events)
    lines.append(f"items: {items['set_aside']:,} of {items['rows']:,} will be set aside")
    lines += _check_lines(items)
    if "users" in report:
        users = report["users"]
        lines.append(f"users: {users['rows']:,} ({users['unreadable']:,} unreadable, "
                     f"{users['repeated_ids']:,} repeated ids)")
    lines += [f"  note: {note}" for note in report.get("notes", [])]
    return lines


def _check_lines(summary: dict) -> list[str]:
    lines = []
    for name, check in summary["checks"].items():
        examples = ", ".join(repr(e) for e in check["examples"])
        lines.append(f"  {name}: {check['rows']:,} ({check['reason']})" + (f", e.g. {examples}" if examples else ""))
    return lines
