"""Train the catalogue heads and record them as an MLflow run (params, per-label metrics, model)."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .heads import TooFewLabels, TrainedHead, describe, find_label_groups, train_head

EXPERIMENT = "visrec-tag-heads"


def metric_name(*parts: str) -> str:
    return ".".join(re.sub(r"[^A-Za-z0-9_\-. /]", "_", p) for p in parts)


def train_and_log_heads(features: np.ndarray, items: pd.DataFrame, registry, run_tags: dict,
                        epochs: int = 150, hidden: int = 256,
                        seed: int = 0) -> tuple[list[TrainedHead], str | None, pd.DataFrame]:
    """Heads for every label column of ``items`` (rows aligned with ``features``), logged to the
    MLflow store of ``registry`` (a ``registry.Registry``); returns the heads, the MLflow run id
    (None when there is nothing to learn) and a per-label metrics table."""
    heads, skipped = [], []
    for group in find_label_groups(items):
        try:
            heads.append(train_head(features, items, group, epochs=epochs, hidden=hidden, seed=seed))
        except TooFewLabels as reason:   # a small catalogue: say so, train the others
            skipped.append(str(reason))
    if not heads:
        return [], None, pd.DataFrame(columns=["group", "label", "precision", "recall", "f1", "support"])
    groups = [h.group for h in heads]
    per_label = pd.concat([h.per_label.assign(group=h.group.column) for h in heads], ignore_index=True)
    per_label = per_label[["group", "label", "precision", "recall", "f1", "support"]]

    mlflow = registry.mlflow(EXPERIMENT)
    with mlflow.start_run(run_name=f"heads-{run_tags.get('dataset', 'dataset')}") as run:
        mlflow.set_tags({**run_tags, "git_commit": registry.git_commit()})
        mlflow.log_params({"epochs": epochs, "hidden": hidden, "seed": seed, "items": len(items),
                           "label_groups": ",".join(g.column for g in groups),
                           "skipped_groups": "; ".join(skipped) or "none"})
        for head in heads:
            mlflow.log_metrics({metric_name(head.group.column, k): v for k, v in head.metrics.items()})
            mlflow.log_metrics({metric_name(head.group.column, row.label, m): float(getattr(row, m))
                                for row in head.per_label.itertuples() for m in ("precision", "recall")})
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch)
            per_label.to_csv(out / "per_label_metrics.csv", index=False)
            (out / "per_label_metrics.md").write_text(per_label.to_markdown(index=False, floatfmt=".3f"))
            (out / "heads.json").write_text(describe(heads))
            for head in heads:
                (out / f"head_{head.group.column}.pt").write_bytes(head.to_bytes())
            mlflow.log_artifacts(str(out))
    return heads, run.info.run_id, per_label
