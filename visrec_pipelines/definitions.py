"""The Dagster code location: ``dagster dev -m visrec_pipelines.definitions``.

The dataset is chosen by VISREC_DATASET (default: demo); see ``visrec_pipelines.settings``.
"""
from __future__ import annotations

import os

from dagster import (Definitions, in_process_executor, load_asset_checks_from_modules, load_assets_from_modules,
                     multiprocess_executor)

from .defs import automation, behaviour, catalogue, rankers, serving, vision
from .resources import default_resources

DOMAINS = [catalogue, behaviour, vision, rankers, serving]


def executor():
    """VISREC_EXECUTOR=multiprocess (each step its own process, VISREC_MAX_CONCURRENT at a time)
    scales out on a bigger machine; the default runs a job's steps in one process, which on a
    small machine saves ~5 s of imports per step (a retrain has over a dozen steps)."""
    if os.environ.get("VISREC_EXECUTOR", "in_process") == "multiprocess":
        return multiprocess_executor.configured(
            {"max_concurrent": int(os.environ.get("VISREC_MAX_CONCURRENT", "0"))})
    return in_process_executor


def build_definitions(dataset: str | None = None) -> Definitions:
    return Definitions(
        assets=load_assets_from_modules(DOMAINS),
        asset_checks=load_asset_checks_from_modules(DOMAINS),
        resources=default_resources(dataset),
        jobs=automation.JOBS,
        executor=executor(),
        sensors=automation.build_sensors(),
        schedules=automation.build_schedules(),
    )


defs = build_definitions()
