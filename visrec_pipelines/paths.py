"""Paths that come from data (an items table, an import's image column, a request) stay inside
the folder they are relative to: ``..``, an absolute path or a symbolic link out of it is refused."""
from __future__ import annotations

from pathlib import Path


class OutsideFolder(PermissionError):
    """A data-supplied path that leads outside its folder."""


def inside(folder: Path, relative) -> Path:
    """``folder / relative`` with every link resolved; OutsideFolder if that leaves ``folder``."""
    root = Path(folder).resolve()
    path = (root / str(relative)).resolve()
    if path != root and root not in path.parents:
        raise OutsideFolder(f"path {str(relative)[:200]!r} leads outside {root.name}/")
    return path
