"""What the sensors look at, as plain functions: fingerprints of the catalogue and the behaviour
landing files. No Dagster here, so each is testable on its own.

- Catalogue: one fingerprint per item = its items.csv row + its image file's size and mtime. The
  sensor's cursor names a digest; the fingerprints behind it are kept in a small JSON file next to
  the warehouse, so the next tick can tell which items were added, changed or removed.
- Behaviour: events.csv's signature and the landing files (``Dataset.landing_events_dir``:
  ``assets/<dataset>.landing/events/*.csv``, written atomically by the serving API or a loader).
  The cursor is a watermark of modification times plus the names seen at the watermark's edge, so
  each file triggers once.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_atomically
from .data.contract import FILE_PATTERN, Dataset

EDGE_NS = 3_600 * 10**9   # files this close to the watermark are remembered by name (clock slack)


# --- catalogue -------------------------------------------------------------------------------------

def latest_catalogue_change_ns(dataset: Dataset) -> int:
    """The newest modification time among items.csv and the images folder's files."""
    times = [dataset.items_path.stat().st_mtime_ns] if dataset.items_path.exists() else [0]
    if dataset.images_dir.is_dir():
        times += [entry.stat().st_mtime_ns for entry in os.scandir(dataset.images_dir) if entry.is_file()]
    return max(times)


def catalogue_fingerprints(dataset: Dataset) -> dict[str, str]:
    """{item_id: fingerprint of its row and image file}; a missing image still has a fingerprint."""
    items = dataset.read_items()
    out = {}
    for row in items.itertuples(index=False):
        record = json.dumps([None if v != v else v for v in row], default=str)  # NaN → null
        image = getattr(row, "image_path", None)
        try:
            stat = dataset.image_file(image).stat() if image and image == image else None
            signature = f"{stat.st_size}:{stat.st_mtime_ns}" if stat else "no-image"
        except (OSError, ValueError):
            signature = "missing"
        out[str(row.item_id)] = hashlib.sha1(f"{record}|{signature}".encode()).hexdigest()[:16]
    return out


def digest(fingerprints: dict[str, str]) -> str:
    return hashlib.sha1(json.dumps(sorted(fingerprints.items())).encode()).hexdigest()[:20]


@dataclass
class CatalogueChange:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def summary(self) -> str:
        return f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed"


def compare(before: dict[str, str], now: dict[str, str]) -> CatalogueChange:
    return CatalogueChange(added=sorted(set(now) - set(before)),
                           changed=sorted(i for i in set(now) & set(before) if now[i] != before[i]),
                           removed=sorted(set(before) - set(now)))


class FingerprintStore:
    """Fingerprint sets by digest, so a cursor (a digest) always finds what it stood for."""

    def __init__(self, root: Path, keep: int = 5):
        self.root, self.keep = Path(root), keep

    def load(self, key: str | None) -> dict[str, str]:
        if not key:
            return {}
        try:
            return json.loads((self.root / f"{key}.json").read_text())
        except (OSError, ValueError):
            return {}

    def save(self, fingerprints: dict[str, str]) -> str:
        key = digest(fingerprints)
        write_atomically(self.root / f"{key}.json", json.dumps(fingerprints))
        for old in sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime)[:-self.keep]:
            old.unlink(missing_ok=True)
        return key


# --- behaviour -------------------------------------------------------------------------------------

@dataclass
class BehaviourCursor:
    events_signature: str = ""
    watermark_ns: int = 0
    edge: list[str] = field(default_factory=list)   # names with mtime in (watermark - EDGE_NS, watermark]

    @classmethod
    def parse(cls, text: str | None) -> BehaviourCursor:
        return cls(**json.loads(text)) if text else cls()

    def dumps(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def file_signature(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def new_behaviour_data(dataset: Dataset, cursor: BehaviourCursor,
                       consumed_until_ns: int = 0) -> tuple[list[str], bool, BehaviourCursor]:
    """(new landing file names, whether events.csv changed, the cursor after taking them).

    ``consumed_until_ns`` (first tick only: when behaviour was last materialised) counts files
    and an events.csv not modified since then as already consumed."""
    files = []
    folder = dataset.landing_events_dir
    if folder.is_dir():
        for path in folder.glob(FILE_PATTERN):      # what read_landed_events reads
            try:
                files.append((path.stat().st_mtime_ns, path.name))
            except OSError:      # removed between listing and stat
                continue
    if not cursor.events_signature and not cursor.watermark_ns and consumed_until_ns:
        events = dataset.events_path
        consumed = events.exists() and events.stat().st_mtime_ns <= consumed_until_ns
        cursor = BehaviourCursor(file_signature(events) if consumed else "", consumed_until_ns,
                                 sorted(n for m, n in files if m <= consumed_until_ns))
    seen_edge = set(cursor.edge)
    new = sorted((m, n) for m, n in files
                 if m > cursor.watermark_ns or (m > cursor.watermark_ns - EDGE_NS and n not in seen_edge))
    signature = file_signature(dataset.events_path)
    events_changed = signature != cursor.events_signature
    watermark = max([cursor.watermark_ns] + [m for m, _ in new])
    edge = sorted({n for m, n in files if m > watermark - EDGE_NS})
    return [n for _, n in new], events_changed, BehaviourCursor(signature, watermark, edge)
