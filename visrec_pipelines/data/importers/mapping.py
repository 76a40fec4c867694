"""Column mappings: which column of a shop's file is which contract column.

On the command line ``--map user_id=customer_id`` (every table that has ``customer_id``) or
``--map items.title=prod_name`` (that table only); in a file (``--mapping mapping.yaml``)::

    events: {user_id: customer_id, item_id: article_id, timestamp: t_dat}
    items: {item_id: article_id, title: prod_name}
    users: {user_id: customer_id}
    timestamp_format: "%Y-%m-%d"     # optional: auto, iso, unix_s, unix_ms, unix_us or a strptime pattern
    event_type: purchase             # optional: the type of events whose table has no event_type column

A mapping naming a column the file lacks is an error that names the file, the column and what the
file has: a silently ignored mapping would quarantine every row later, far from the cause.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ...times import check_format
from ..contract import EVENT_COLUMNS
from ..rules import EVENT_TYPES
from ..tables import DatasetError

TABLES = ("events", "items", "users")
# which contract columns an unqualified --map can be meant for, per table
CONTRACT_COLUMNS = {"events": EVENT_COLUMNS, "items": ("item_id", "image_path", "image", "title", "description"),
                    "users": ("user_id",)}
FILE_KEYS = (*TABLES, "timestamp_format", "event_type")


@dataclass
class ColumnMapping:
    tables: dict[str, dict[str, str]] = field(default_factory=lambda: {t: {} for t in TABLES})
    anywhere: dict[str, str] = field(default_factory=dict)    # unqualified: every table with the column
    timestamp_format: str | None = None
    event_type: str | None = None

    @classmethod
    def build(cls, mapping_file: Path | None = None, pairs: tuple[str, ...] = (),
              timestamp_format: str | None = None, event_type: str | None = None) -> ColumnMapping:
        """The file first, then ``--map`` pairs and the options (the command line wins)."""
        mapping = cls._from_file(Path(mapping_file)) if mapping_file else cls()
        for pair in pairs:
            mapping._add_pair(pair)
        mapping.timestamp_format = timestamp_format or mapping.timestamp_format
        mapping.event_type = event_type or mapping.event_type
        try:
            mapping.timestamp_format = check_format(mapping.timestamp_format)
        except ValueError as problem:
            raise DatasetError(str(problem)) from None
        if mapping.event_type is not None and mapping.event_type not in EVENT_TYPES:
            raise DatasetError(f"event type {mapping.event_type!r} is not one of {', '.join(EVENT_TYPES)}")
        return mapping

    @classmethod
    def _from_file(cls, path: Path) -> ColumnMapping:
        try:
            spec = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise DatasetError(f"{path}: not a readable YAML mapping ({exc})") from exc
        unknown = set(spec) - set(FILE_KEYS) if isinstance(spec, dict) else {"(not a mapping)"}
        if unknown:
            raise DatasetError(f"{path}: unknown key(s) {sorted(map(str, unknown))}; expected {list(FILE_KEYS)}")
        mapping = cls(timestamp_format=spec.get("timestamp_format"), event_type=spec.get("event_type"))
        for table in TABLES:
            section = spec.get(table) or {}
            if not isinstance(section, dict):
                raise DatasetError(f"{path}: {table}: must map contract columns to the file's columns")
            mapping.tables[table] = {str(k): str(v) for k, v in section.items()}
        return mapping

    def _add_pair(self, pair: str) -> None:
        target, _, source = pair.partition("=")
        table, dot, column = target.partition(".")
        if not (source.strip() and target.strip()):
            raise DatasetError(f"--map {pair!r}: expected CONTRACT_COLUMN=SOURCE_COLUMN, e.g. user_id=customer_id")
        if dot and table in TABLES:
            self.tables[table][column.strip()] = source.strip()
        else:
            self.anywhere[target.strip()] = source.strip()

    def apply(self, table: str, frame: pd.DataFrame, path: Path) -> pd.DataFrame:
        """``frame`` with its mapped columns under their contract names (every other column kept)."""
        wanted = dict(self.tables[table])
        for target, source in self.anywhere.items():
            if target in wanted or target not in CONTRACT_COLUMNS[table]:
                continue
            if source in frame.columns or target not in frame.columns:
                wanted[target] = source        # the file already has the target column: nothing to map
        for target, source in wanted.items():
            if source not in frame.columns:
                raise DatasetError(f"{path}: the mapping {target}={source} names column {source!r}, which the "
                                   f"file lacks; it has {list(frame.columns)}")
            if target in frame.columns and target not in wanted.values() and target != source:
                raise DatasetError(f"{path}: cannot map {target}={source}: the file already has a {target!r} "
                                   f"column (map that one elsewhere first)")
        renamed = {source: target for target, source in wanted.items()}
        out = frame.rename(columns=renamed)
        for target, source in wanted.items():    # one source mapped to two contract columns: a copy
            if target not in out:
                out[target] = frame[source]
        return out

    def describe(self) -> dict:
        return {"tables": {t: m for t, m in self.tables.items() if m}, "anywhere": self.anywhere,
                "timestamp_format": self.timestamp_format, "event_type": self.event_type}
