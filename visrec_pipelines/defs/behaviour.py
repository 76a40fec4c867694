"""Behaviour assets: raw events, GX-validated events and the quarantine of bad rows."""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetOut, Config, Output, asset, multi_asset

from ..quality.behaviour import EVENTS_SUITE, validate_events
from ..quality.suites import check_names
from ..resources import DatasetResource
from .metadata import counts_table, dataset_metadata, table_preview

GROUP = "behaviour"
GATE = "bad_fraction_within_threshold"


@asset(group_name=GROUP, description="The dataset's events table as imported, plus the feedback landed "
                                     "by the serving API (text, unvalidated).")
def behaviour_source(dataset: DatasetResource) -> Output[pd.DataFrame]:
    events = dataset.dataset.read_events()
    landed = int(events["event_id"].notna().sum()) if "event_id" in events else 0
    return Output(events, metadata={**dataset_metadata(dataset.version()), "rows": len(events),
                                    "landed_feedback_rows": landed, "preview": table_preview(events)})


class BehaviourConfig(Config):
    max_bad_fraction: float = 0.05


@multi_asset(
    group_name=GROUP,
    outs={"behaviour_events": AssetOut(description="Events that passed every expectation, typed."),
          "quarantined_events": AssetOut(description="Events that failed, with the failed checks.")},
    check_specs=[AssetCheckSpec(name, asset="behaviour_events") for name in check_names(EVENTS_SUITE)]
    + [AssetCheckSpec(GATE, asset="behaviour_events", blocking=True,
                      description="Blocks downstream assets when too many rows are bad.")],
)
def behaviour_events(config: BehaviourConfig, dataset: DatasetResource,
                     behaviour_source: pd.DataFrame, catalogue_source: pd.DataFrame):
    users = dataset.dataset.read_users()
    outcome = validate_events(
        behaviour_source, known_item_ids=catalogue_source["item_id"].dropna(),
        known_user_ids=None if users is None else users["user_id"].dropna())
    valid, quarantined = outcome.valid, outcome.quarantined
    by_type = valid["event_type"].value_counts().to_dict()
    yield Output(valid, output_name="behaviour_events", metadata={
        **dataset_metadata(dataset.version()), "rows_in": len(behaviour_source),
        "accepted": len(valid), "quarantined": len(quarantined), "users": valid["user_id"].nunique(),
        "items": valid["item_id"].nunique(), "by_event_type": counts_table(by_type),
        "preview": table_preview(valid)})
    yield Output(quarantined, output_name="quarantined_events", metadata={
        "rows": len(quarantined),
        "by_check": counts_table({e.check_name: e.unexpected_count for e in outcome.expectations
                                  if e.unexpected_count}),
        "preview": table_preview(quarantined)})
    for expectation in outcome.expectations:
        yield AssetCheckResult(
            check_name=expectation.check_name, asset_key="behaviour_events",
            passed=expectation.unexpected_count == 0, severity=AssetCheckSeverity.WARN,
            metadata={"rule": expectation.reason, "evaluated": expectation.evaluated,
                      "unexpected_rows": expectation.unexpected_count,
                      "unexpected_fraction": expectation.unexpected_fraction})
    yield AssetCheckResult(
        check_name=GATE, asset_key="behaviour_events", severity=AssetCheckSeverity.ERROR,
        passed=outcome.bad_fraction <= config.max_bad_fraction,
        metadata={"bad_fraction": outcome.bad_fraction, "threshold": config.max_bad_fraction})
