"""Self-repair of the embedding store: what a killed writer or a damaged disk leaves behind.

- A writer killed mid-chunk leaves its hidden ``.tmp`` file. Temp names carry the writer's host and
  pid, so a later opener on the same host removes files whose writer is gone; any temp file older
  than a day is removed whoever wrote it (a writer on another machine long dead).
- A chunk that cannot be read (a torn Parquet footer, garbage bytes) is moved to ``corrupt/`` with
  a note of why: its items are then simply not stored, so the next run embeds them again.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

STALE_TMP_S = 24 * 3600
_HOST = socket.gethostname().replace("-", "_")


def temp_name() -> str:
    """A hidden name that says who is writing it: ``.<host>-<pid>-<random>.tmp``."""
    return f".{_HOST}-{os.getpid()}-{uuid.uuid4().hex}.tmp"


def sweep_orphans(folder: Path, now: float | None = None) -> int:
    """Remove temp files whose writer is dead; returns how many."""
    now = time.time() if now is None else now
    removed = 0
    for path in folder.glob(".*.tmp"):
        try:
            if _writer_gone(path.name) or now - path.stat().st_mtime > STALE_TMP_S:
                path.unlink()
                removed += 1
        except OSError:      # another opener removed it first
            continue
    return removed


def _writer_gone(name: str) -> bool:
    parts = name[1:].split("-")
    if len(parts) < 3 or parts[0] != _HOST or not parts[1].isdigit():
        return False         # another host's writer, or an old-style name: left to the age rule
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def set_aside(chunk: Path, store_dir: Path, problem: Exception) -> str:
    """Move an unreadable chunk to ``<store>/corrupt/``; returns what was done, for reports."""
    target_dir = store_dir / "corrupt"
    target_dir.mkdir(exist_ok=True)
    target = target_dir / chunk.name
    os.replace(chunk, target)
    reason = f"{type(problem).__name__}: {str(problem)[:300]}"
    (target_dir / f"{chunk.name}.why.txt").write_text(reason + "\n")
    return f"chunk {chunk.name} was unreadable ({reason}); moved to corrupt/ and its items will be embedded again"
