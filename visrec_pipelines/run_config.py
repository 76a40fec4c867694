"""Run config from the command line: ``visrec run --set behaviour_events.max_bad_fraction=0.5`` or
``--config run.yaml``, checked against the assets' own ``Config`` classes before anything runs.

``--set ASSET.FIELD=VALUE`` (VALUE read as YAML: 0.5, true, [a, b]); the file holds
``ASSET: {FIELD: VALUE}`` (or Dagster's own ``ops: {ASSET: {config: {...}}}``). An unknown asset or
field, or a value of the wrong type, is a one-line error listing what is there.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import yaml


class RunConfigError(ValueError):
    """A --set/--config entry that no asset takes."""


def config_classes(defs) -> dict[str, type]:
    """Asset (op) name → its Config class, for every asset that has knobs. A graph asset (e.g.
    ``image_embeddings``, one step per shard) maps its one config to the op that takes it."""
    found = {}
    for assets_def in defs.assets or []:
        node = assets_def.node_def
        ops = node.iterate_op_defs() if hasattr(node, "iterate_op_defs") else [node]
        for op in ops:
            function = getattr(op.compute_fn, "decorated_fn", None)
            parameter = inspect.signature(function).parameters.get("config") if function else None
            if parameter is not None and inspect.isclass(parameter.annotation):   # Dagster's name for it
                found[node.name] = parameter.annotation
                break
    return found


def build_run_config(defs, assignments: list[str] = (), files: list[Path] = ()) -> dict:
    """Dagster run config ``{"ops": {asset: {"config": {...}}}}``; files first, then --set."""
    wanted: dict[str, dict] = {}
    for path in files:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise RunConfigError(f"{path}: expected a mapping of asset: {{field: value}}")
        ops = loaded.get("ops", loaded)
        for op, fields in ops.items():
            fields = (fields or {}).get("config", fields) if "ops" in loaded else fields
            if not isinstance(fields, dict):
                raise RunConfigError(f"{path}: {op} must map fields to values, got {fields!r}")
            wanted.setdefault(op, {}).update(fields)
    for assignment in assignments:
        target, sep, raw = assignment.partition("=")
        op, dot, field = target.strip().partition(".")
        if not (sep and dot and op and field):
            raise RunConfigError(f"--set {assignment!r}: expected ASSET.FIELD=VALUE, "
                                 "e.g. behaviour_events.max_bad_fraction=0.5")
        wanted.setdefault(op, {})[field.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return {"ops": {op: {"config": _checked(op, fields, config_classes(defs))} for op, fields in wanted.items()}}


def _checked(op: str, fields: dict, classes: dict[str, type]) -> dict:
    from pydantic import ValidationError

    if op not in classes:
        raise RunConfigError(f"no asset {op!r} takes run config; these do: {', '.join(sorted(classes))}")
    known = classes[op].model_fields
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise RunConfigError(f"{op} has no setting {', '.join(unknown)}; it has: "
                             + ", ".join(f"{name} (default {info.default!r})" for name, info in known.items()))
    try:
        classes[op](**fields)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        raise RunConfigError(f"{op}.{first['loc'][0]}: {first['msg']} (got {first.get('input')!r})") from None
    return fields


def describe(defs) -> str:
    """Every asset's settings with their defaults, for ``visrec run --help-config``."""
    lines = []
    for op, cls in sorted(config_classes(defs).items()):
        for name, info in cls.model_fields.items():
            lines.append(f"{op}.{name} = {info.default!r}")
    return "\n".join(lines)
