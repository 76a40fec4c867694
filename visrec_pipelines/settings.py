"""Where things live. Local defaults relative to the project root; production overrides by env.

VISREC_ROOT      project root (default: the current directory)
VISREC_ASSETS    dataset folders (default: <root>/assets)
VISREC_WAREHOUSE asset outputs, per dataset (default: <root>/.visrec/warehouse)
VISREC_DATASET   which dataset the Dagster code location works on (default: demo)
"""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATASET = "demo"


def project_root() -> Path:
    return Path(os.environ.get("VISREC_ROOT") or Path.cwd()).resolve()


def assets_dir() -> Path:
    return Path(os.environ.get("VISREC_ASSETS") or project_root() / "assets").resolve()


def warehouse_dir() -> Path:
    return Path(os.environ.get("VISREC_WAREHOUSE") or project_root() / ".visrec" / "warehouse").resolve()


def dataset_name() -> str:
    return os.environ.get("VISREC_DATASET") or DEFAULT_DATASET
