"""MLflow, local by default: sqlite store + artifacts under ``<root>/mlflow/``.

Production sets MLFLOW_TRACKING_URI (a tracking server) and the same code logs there.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import settings


def mlflow_dir() -> Path:
    return settings.project_root() / "mlflow"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


def configure(experiment: str):
    """Point mlflow at our store and select (creating if needed) an experiment; returns mlflow."""
    import mlflow

    uri = tracking_uri()
    user_setting = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # mlflow exports the URI into the environment; undo that so the next configure() (another
    # project root, e.g. in tests) is not pinned to this one.
    if user_setting is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_setting
    if mlflow.get_experiment_by_name(experiment) is None:
        location = None
        if uri.startswith("sqlite:"):  # keep artifacts beside the local store, not in ./mlruns
            location = (mlflow_dir() / "artifacts").resolve().as_uri()
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return mlflow


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=settings.project_root(),
                              capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
