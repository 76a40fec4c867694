"""MLflow, pointed at the store ``settings.Settings.tracking_uri`` names: a local sqlite store with
artifacts under ``<root>/mlflow/`` by default, a tracking server in production (same code)."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


def configure(uri: str, experiment: str, artifacts_dir: Path | None = None):
    """Point mlflow at ``uri`` and select (creating if needed) an experiment; returns mlflow."""
    import mlflow

    user_setting = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # mlflow exports the URI into the environment; undo that so the next configure() (another
    # store, e.g. in tests) is not pinned to this one.
    if user_setting is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_setting
    with local_store_lock(uri):
        if mlflow.get_experiment_by_name(experiment) is None:
            location = None
            if uri.startswith("sqlite:") and artifacts_dir is not None:   # beside the store, not ./mlruns
                location = (Path(artifacts_dir) / "artifacts").resolve().as_uri()
            mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return mlflow


def local_store_lock(uri: str):
    """Steps running side by side (multiprocess, Celery workers) that open a new local sqlite store at
    once would both run its schema migrations, and both create a missing experiment: the loser fails.
    A file lock beside the store makes the first one do it and the others find it done. A tracking
    server needs none."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(uri.removeprefix("sqlite:///") + ".init.lock", timeout=300)


def git_commit(root: Path | None = None) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
