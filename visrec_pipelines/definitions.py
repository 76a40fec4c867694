"""The Dagster code location: ``dagster dev -m visrec_pipelines.definitions``.

The dataset is chosen by VISREC_DATASET (default: demo); see ``visrec_pipelines.settings``.
"""
from __future__ import annotations

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from .defs import behaviour, catalogue, rankers, vision
from .resources import default_resources

DOMAINS = [catalogue, behaviour, vision, rankers]


def build_definitions(dataset: str | None = None) -> Definitions:
    return Definitions(
        assets=load_assets_from_modules(DOMAINS),
        asset_checks=load_asset_checks_from_modules(DOMAINS),
        resources=default_resources(dataset),
    )


defs = build_definitions()
