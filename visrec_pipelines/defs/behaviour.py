"""Behaviour assets: raw events, GX-validated events, and what was set aside — malformed rows
(quarantined) and orphans (sound rows naming an item or user the dataset does not know)."""

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    Config,
    Output,
    asset,
    multi_asset,
)

from ..quality.behaviour import EVENTS_SUITE, gate_message, validate_events
from ..quality.suites import check_names
from ..resources import DatasetsResource
from .metadata import counts_table, dataset_metadata, table_preview
from .partitions import DATASETS

GROUP = "behaviour"
GATE = "bad_fraction_within_threshold"
ORPHAN_GATE = "orphan_fraction_within_threshold"


@asset(group_name=GROUP, partitions_def=DATASETS,
       description="The dataset's events table as imported, plus the feedback landed "
                                     "by the serving API (text, unvalidated).")
def behaviour_source(context: AssetExecutionContext, datasets: DatasetsResource) -> Output[pd.DataFrame]:
    dataset = datasets.of(context)
    events = dataset.folder.read_events()
    landed = int(events["event_id"].notna().sum()) if "event_id" in events else 0
    return Output(events, metadata={**dataset_metadata(dataset.version()), "rows": len(events),
                                    "landed_feedback_rows": landed, "preview": table_preview(events)})


class BehaviourConfig(Config):
    max_bad_fraction: float = 0.05      # malformed rows: corrupt data stops the run above this
    max_orphan_fraction: float = 0.9    # events on unknown items/users: a shop sells more than it pictures,
    #                                     but (nearly) all orphans means the ids do not match at all


@multi_asset(
    group_name=GROUP, partitions_def=DATASETS,
    outs={"behaviour_events": AssetOut(description="Events that passed every expectation, typed; exact "
                                                   "repeats merged into one event with a quantity."),
          "quarantined_events": AssetOut(description="Malformed events, with the failed checks."),
          "orphan_events": AssetOut(description="Sound events naming an item or user the dataset does not "
                                                "know (not in the catalogue, no usable image), set aside.")},
    check_specs=[AssetCheckSpec(name, asset="behaviour_events", partitions_def=DATASETS)
                 for name in check_names(EVENTS_SUITE)]
    + [AssetCheckSpec(GATE, asset="behaviour_events", partitions_def=DATASETS, blocking=True,
                      description="Blocks downstream assets when too many rows are malformed."),
       AssetCheckSpec(ORPHAN_GATE, asset="behaviour_events", partitions_def=DATASETS, blocking=True,
                      description="Blocks downstream assets when (nearly) no event names a known item.")],
)
def behaviour_events(context: AssetExecutionContext, config: BehaviourConfig, datasets: DatasetsResource,
                     behaviour_source: pd.DataFrame, catalogue_source: pd.DataFrame):
    dataset = datasets.of(context)
    users = dataset.folder.read_users()
    outcome = validate_events(
        behaviour_source, known_item_ids=catalogue_source["item_id"].dropna(),
        known_user_ids=None if users is None else users["user_id"].dropna())
    valid = outcome.valid
    yield Output(valid, output_name="behaviour_events", metadata={
        **dataset_metadata(dataset.version()), "rows_in": outcome.rows_in,
        "accepted": int(valid["quantity"].sum()), "events": len(valid),
        "repeats_merged": outcome.repeats_merged, "quarantined": len(outcome.malformed),
        "orphans": len(outcome.orphans), "reconciles": outcome.reconciles(),
        "users": valid["user_id"].nunique(), "items": valid["item_id"].nunique(),
        "by_event_type": counts_table(valid["event_type"].value_counts().to_dict()),
        "preview": table_preview(valid)})
    for name, frame in (("quarantined_events", outcome.malformed), ("orphan_events", outcome.orphans)):
        yield Output(frame, output_name=name, metadata={
            "rows": len(frame), "by_check": counts_table(dict(outcome.top_reasons(frame, n=20))),
            "preview": table_preview(frame)})
    for expectation in outcome.expectations:
        yield AssetCheckResult(
            check_name=expectation.check_name, asset_key="behaviour_events",
            passed=expectation.unexpected_count == 0, severity=AssetCheckSeverity.WARN,
            metadata={"rule": expectation.reason, "evaluated": expectation.evaluated,
                      "unexpected_rows": expectation.unexpected_count,
                      "unexpected_fraction": expectation.unexpected_fraction})
    for gate, option, rows, limit in ((GATE, "max_bad_fraction", outcome.malformed, config.max_bad_fraction),
                                      (ORPHAN_GATE, "max_orphan_fraction", outcome.orphans,
                                       config.max_orphan_fraction)):
        fraction = len(rows) / outcome.rows_in if outcome.rows_in else 0.0
        passed = fraction <= limit
        yield AssetCheckResult(
            check_name=gate, asset_key="behaviour_events", severity=AssetCheckSeverity.ERROR, passed=passed,
            description=None if passed else gate_message(outcome, rows, limit, f"behaviour_events.{option}"),
            metadata={"fraction": fraction, "threshold": limit, "rows": len(rows)})
