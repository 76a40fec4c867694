"""Run a Great Expectations suite over a DataFrame and split it into valid and quarantined rows.

Every expectation in our suites is a column-map rule, so GX can tell which rows broke it
(``unexpected_index_list``). A row that breaks any rule is quarantined with the reasons of all the
rules it broke; the rest pass. Counts in = valid + quarantined, by construction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..data.rules import check_names, load_suite_spec  # noqa: F401  (check_names: re-exported)

ROW_LEVEL_CHECKS = {"row_well_formed"}     # when one of these fails, the row's other failures follow from it


@dataclass(frozen=True)
class ExpectationOutcome:
    check_name: str
    reason: str
    column: str
    evaluated: bool          # False when a run-time parameter (e.g. a users table) was not available
    unexpected_count: int
    unexpected_fraction: float


@dataclass(frozen=True)
class ValidationOutcome:
    valid: pd.DataFrame
    quarantined: pd.DataFrame          # original columns + failed_checks + reason
    expectations: list[ExpectationOutcome]

    @property
    def bad_fraction(self) -> float:
        total = len(self.valid) + len(self.quarantined)
        return len(self.quarantined) / total if total else 0.0


def _needed_parameters(expectation: dict) -> set[str]:
    return {v["$PARAMETER"] for v in expectation["kwargs"].values()
            if isinstance(v, dict) and "$PARAMETER" in v}


@lru_cache(maxsize=1)
def _context():
    from great_expectations.data_context.types.base import ProgressBarsConfig

    import great_expectations as gx  # ~2-5 s import: only when a validation really runs

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.data_sources.add_pandas("visrec")
    return context


def validate(frame: pd.DataFrame, suite_name: str, parameters: dict | None = None,
             suites_dir: Path | None = None) -> ValidationOutcome:
    """Validate ``frame`` (index is reset) against a suite file; returns the split and per-rule counts."""
    import great_expectations as gx

    parameters = parameters or {}
    spec = load_suite_spec(suite_name, suites_dir)
    runnable = [e for e in spec["expectations"] if _needed_parameters(e) <= parameters.keys()]
    frame = frame.reset_index(drop=True)

    context = _context()
    source = context.data_sources.get("visrec")
    asset_name = f"{suite_name}_{id(frame)}"
    batch = (source.add_dataframe_asset(asset_name).add_batch_definition_whole_dataframe("all")
             .get_batch(batch_parameters={"dataframe": frame}))
    suite = gx.ExpectationSuite(name=suite_name, expectations=runnable)
    try:
        result = batch.validate(suite, expectation_parameters=parameters,
                                result_format={"result_format": "COMPLETE"})
    finally:
        source.delete_asset(asset_name)

    failed_by_row: dict[int, list[dict]] = {}
    counts: dict[str, int] = {}
    for expectation_result in result.results:
        meta = expectation_result.expectation_config.meta
        if expectation_result.exception_info.get("raised_exception"):
            raise RuntimeError(f"expectation {meta['check_name']} could not run: "
                               f"{expectation_result.exception_info.get('exception_message')}")
        counts[meta["check_name"]] = 0
        for row in expectation_result.result.get("unexpected_index_list") or []:
            failed_by_row.setdefault(int(row), []).append(meta)
    for row, metas in failed_by_row.items():
        # a row that could not be read breaks every other rule too; that says nothing more
        unreadable = [m for m in metas if m["check_name"] in ROW_LEVEL_CHECKS]
        failed_by_row[row] = unreadable or metas
        for meta in failed_by_row[row]:
            counts[meta["check_name"]] += 1

    bad = sorted(failed_by_row)
    quarantined = frame.loc[bad].copy()
    quarantined["failed_checks"] = [";".join(m["check_name"] for m in failed_by_row[i]) for i in bad]
    quarantined["reason"] = ["; ".join(m["reason"] for m in failed_by_row[i]) for i in bad]
    valid = frame.drop(index=bad)

    outcomes = []
    for e in spec["expectations"]:
        name, count = e["meta"]["check_name"], counts.get(e["meta"]["check_name"], 0)
        outcomes.append(ExpectationOutcome(
            check_name=name, reason=e["meta"]["reason"], column=e["kwargs"].get("column", ""),
            evaluated=name in counts, unexpected_count=count,
            unexpected_fraction=count / len(frame) if len(frame) else 0.0))
    return ValidationOutcome(valid=valid, quarantined=quarantined, expectations=outcomes)
