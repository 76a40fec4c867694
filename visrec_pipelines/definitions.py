"""The Dagster code location: ``dagster dev -m visrec_pipelines.definitions``.

Built from ``settings.Settings`` (read from the environment once, here); ``build_definitions`` takes
any other settings, which is how ``visrec run`` and the tests point the graph elsewhere.
"""
from __future__ import annotations

from dagster import (
    Definitions,
    FilesystemIOManager,
    in_process_executor,
    load_asset_checks_from_modules,
    load_assets_from_modules,
    multiprocess_executor,
)

from .defs import automation, behaviour, catalogue, rankers, vision
from .defs.vision import EMBEDDING_STEP_IO
from .resources import default_resources
from .settings import Settings

DOMAINS = [catalogue, behaviour, vision, rankers]


def executor(settings: Settings):
    """``multiprocess`` (each step its own process, ``max_concurrent`` at a time) scales out on a
    bigger machine; ``celery`` queues every step for Celery workers on any number of machines
    (``deploy/celery``); the default runs a job's steps in one process, which on a small machine
    saves ~5 s of imports per step (a retrain has over a dozen steps)."""
    if settings.executor == "multiprocess":
        return multiprocess_executor.configured({"max_concurrent": settings.max_concurrent})
    if settings.executor == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured({"broker": settings.celery_broker, "backend": settings.celery_backend,
                                           "config_source": {"task_default_queue": settings.celery_queue}})
    return in_process_executor


def resources(settings: Settings) -> dict:
    """The assets' resources, and where steps hand values to each other (the embedding shards'
    reports): under the warehouse, which every worker of a distributed executor sees."""
    steps_dir = settings.warehouse_dir / ".dagster_steps"
    return {**default_resources(settings), EMBEDDING_STEP_IO: FilesystemIOManager(base_dir=str(steps_dir))}


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings()
    return Definitions(
        assets=load_assets_from_modules(DOMAINS),
        asset_checks=load_asset_checks_from_modules(DOMAINS),
        resources=resources(settings),
        jobs=automation.JOBS,
        executor=executor(settings),
        sensors=automation.build_sensors(settings),
        schedules=automation.build_schedules(settings),
    )


defs = build_definitions()
