"""Run the asset graph on one dataset (in this process, or with steps in processes of their own as
``Settings.executor`` says) and summarise what happened."""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from contextlib import contextmanager

from .console import library_output_to
from .data.contract import Dataset, DatasetError
from .settings import DEFAULT_DATASET, Settings

# Dagster's own console log stays quiet: the summary below names every failure (the full story is
# in the run's event log, in the UI)
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
HOST_TAG, PID_TAG = "visrec/host", "visrec/pid"    # who runs an in-process run (no daemon watches it)


def ensure_dataset(settings: Settings, echo: Callable[[str], None]) -> Dataset:
    dataset, name = settings.dataset_folder(), settings.dataset
    if dataset.exists():
        return dataset
    if name != DEFAULT_DATASET:
        raise DatasetError(f"dataset {name!r} not found at {dataset.root}; create it with "
                           "`visrec data demo` or `visrec data import ...` first")
    from .data.demo import generate_demo

    echo(f"demo dataset not found: generating it at {dataset.root}")
    return generate_demo(dataset.root, progress=True)


def dagster_instance(settings: Settings):
    """The Dagster instance of ``settings.dagster_home_dir`` (created with SQLite storage)."""
    from dagster import DagsterInstance

    home = settings.dagster_home_dir
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():  # local default: SQLite storage inside DAGSTER_HOME
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.from_config(str(home))


def fail_abandoned_runs(instance) -> list[str]:
    """Runs this machine started in-process whose process has died (``kill -9``, a crash, a
    reboot) stay STARTED for ever: nothing else watches them. Mark them failed, and say so."""
    from dagster import DagsterRunStatus, RunsFilter

    said = []
    started = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED],
                                                   tags={HOST_TAG: socket.gethostname()}))
    for run in started:
        pid = run.tags.get(PID_TAG, "")
        if pid.isdigit() and not _alive(int(pid)):
            instance.report_run_failed(run, f"the process that ran it (pid {pid}) is gone")
            said.append(f"run {run.run_id} was left STARTED by a process that died (pid {pid}): marked failed")
    return said


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_pipeline(dataset_name: str | None = None, echo: Callable[[str], None] = print,
                 settings: Settings | None = None, run_config: dict | None = None) -> bool:
    """Materialise every asset (with checks) on ``dataset_name`` (default: the settings'), with
    ``run_config`` (``run_config.build_run_config``); returns True on success."""
    from .definitions import build_definitions
    from .defs.partitions import register_dataset

    settings = (settings or Settings()).with_dataset(dataset_name)
    ensure_dataset(settings, echo)
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    echo(f"materialising the asset graph on dataset {settings.dataset!r} "
         f"(Dagster home {settings.dagster_home_dir})")
    started = time.perf_counter()
    log_file = settings.warehouse_for().run_log
    with library_output_to(log_file), dagster_instance(settings) as instance:
        for line in fail_abandoned_runs(instance):
            echo(line)
        register_dataset(instance, settings.dataset)
        config = {**QUIET_LOGS, **(run_config or {})}
        tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
        if settings.executor == "in_process":
            result = job.execute_in_process(instance=instance, run_config=config, partition_key=settings.dataset,
                                            raise_on_error=False, tags=tags)
            lines, said_no, success = outcome(result)
        else:                   # steps in processes of their own (or on Celery workers), which rebuild the job
            from dagster import execute_job, reconstructable

            with settings_in_environment(settings), \
                    execute_job(reconstructable(main_job), instance=instance, run_config=config,
                                tags={**tags, "dagster/partition": settings.dataset}) as result:
                lines, said_no, success = outcome(result)
    for line in lines:
        echo(line)
    ok = success or bool(said_no)
    for gate in said_no:
        echo(EXPECTED_GATES[gate])
    echo(f"{'succeeded' if ok else 'FAILED'} in {time.perf_counter() - started:.1f}s (run {result.run_id}; "
         f"library messages in {log_file})")
    return ok


def outcome(result) -> tuple[list[str], list[str], bool]:
    """What a finished run says: its summary lines, the gates that said no, and whether it succeeded."""
    return summarise(result), gates_that_said_no(result), result.success


def main_job():
    """The main job as the code location builds it from the environment: what each step's process
    reconstructs under the multiprocess and Celery executors."""
    from .definitions import build_definitions

    return build_definitions(Settings()).resolve_job_def("main")


@contextmanager
def settings_in_environment(settings: Settings):
    """``settings`` as environment variables inside the block, so the processes a run starts build
    the same settings (``Settings()``) as this one; the environment is restored afterwards."""
    saved = dict(os.environ)
    for name, value in settings.as_environment().items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# Blocking checks whose "no" is a normal outcome, not a broken pipeline: step → check → message.
EXPECTED_GATES = {
    "champion_ranker": "the challenger did not beat the champion: the champion keeps serving (see champion_ranker)",
    "interaction_split": "not enough users with positives to train rankers: rankers skipped (see interaction_split)",
}


def gates_that_said_no(result) -> list[str]:
    """The steps that failed only because an expected gate said no; empty if anything else failed."""
    failed_steps = {e.step_key for e in result.all_events if e.is_step_failure}
    refused = {e.asset_key.to_user_string() for e in result.get_asset_check_evaluations()
               if not e.passed and e.severity.value == "ERROR"}
    if failed_steps and failed_steps <= set(EXPECTED_GATES) and failed_steps <= refused:
        return sorted(failed_steps)
    return []


SUMMARY_KEYS = ("rows", "rows_in", "images_in", "items_in", "accepted", "quarantined", "orphans", "repeats_merged",
                "catalogue_items", "excluded", "embedded_now", "unchanged", "removed", "failures",
                "images_per_second", "runtime", "label_groups", "colour_accuracy", "category_accuracy",
                "genres_precision", "genres_recall", "mean_tags_per_item", "indexed", "collection",
                "mlflow_run_id", "train_seconds", "best", "challenger", "compared_with", "promoted",
                "champion_version", "dataset_version")


def summarise(result) -> list[str]:
    lines = []
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        shown = {k: v.value for k, v in materialization.metadata.items() if k in SUMMARY_KEYS}
        lines.append(f"  {materialization.asset_key.to_user_string():<20} "
                     + ", ".join(f"{k}={v}" for k, v in shown.items()))
        if materialization.asset_key.to_user_string() == "ranker_evaluation":
            lines += ["    " + row for row in materialization.metadata["metrics"].value.splitlines()]
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None and "DagsterExecution" in error.cls_name:   # our error, not the wrapper
                error = error.cause
            lines.append(f"  step {event.step_key} FAILED: {error.message.strip().splitlines()[0][:400]}")
    for event in result.get_asset_check_evaluations():
        if not event.passed:
            lines.append(f"  check {event.asset_key.to_user_string()}:{event.check_name} "
                         f"FAILED ({event.severity.value})" + (f": {event.description}" if event.description else ""))
    return lines
