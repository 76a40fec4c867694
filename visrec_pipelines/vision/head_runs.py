"""Train the catalogue heads and record them as an MLflow run (params, per-label metrics, heads)."""
from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .heads import IMAGE_BLOCK, TrainedHead, describe, train_heads

EXPERIMENT = "visrec-tag-heads"
LOGGED_METRICS = ("accuracy", "micro_precision", "micro_recall", "micro_f1", "macro_f1",
                  "expected_calibration_error", "rare_labels", "train_items", "held_out_items")


def metric_name(*parts: str) -> str:
    return ".".join(re.sub(r"[^A-Za-z0-9_\-. /]", "_", p) for p in parts)


def train_and_log_heads(features: np.ndarray | Mapping[str, np.ndarray], items: pd.DataFrame, registry,
                        run_tags: dict, epochs: int | None = None, hidden: int | None = None,
                        seed: int = 0) -> tuple[list[TrainedHead], str | None, pd.DataFrame]:
    """Heads for every label column of ``items`` (rows aligned with ``features``: the image
    features, or {block name: features} such as {"image", "colour", "text"}), logged to the MLflow
    store of ``registry`` (a ``registry.Registry``); returns the heads, the MLflow run id (None
    when there is nothing to learn) and a per-label metrics table. (``epochs``/``hidden``: the old
    MLP heads' settings, ignored.)"""
    blocks = dict(features) if isinstance(features, Mapping) else {IMAGE_BLOCK: np.asarray(features)}
    heads, skipped = train_heads(blocks, items, seed=seed)
    if not heads:
        return [], None, pd.DataFrame(columns=["group", "label", "precision", "recall", "f1", "support"])
    per_label = pd.concat([h.per_label.assign(group=h.group.column) for h in heads], ignore_index=True)
    per_label = per_label[["group", "label", "precision", "recall", "f1", "support"]]

    mlflow = registry.mlflow(EXPERIMENT)
    with mlflow.start_run(run_name=f"heads-{run_tags.get('dataset', 'dataset')}") as run:
        mlflow.set_tags({**run_tags, "git_commit": registry.git_commit()})
        mlflow.log_params({"model": "calibrated linear per block, C by 3-fold CV, fused out-of-fold",
                           "seed": seed, "items": len(items),
                           "blocks": ",".join(f"{n}:{x.shape[1]}" for n, x in blocks.items()),
                           "label_groups": ",".join(h.group.column for h in heads)[:500],
                           "skipped_groups": ("; ".join(skipped) or "none")[:500]})
        for head in heads:
            mlflow.log_metrics({metric_name(head.group.column, k): float(v) for k, v in head.metrics.items()
                                if k in LOGGED_METRICS or k.startswith(("fusion.", "cv_"))})
            mlflow.log_metrics({metric_name(head.group.column, row.label, m): float(getattr(row, m))
                                for row in head.per_label.itertuples() for m in ("precision", "recall")})
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch)
            per_label.to_csv(out / "per_label_metrics.csv", index=False)
            (out / "per_label_metrics.md").write_text(per_label.to_markdown(index=False, floatfmt=".3f"))
            (out / "heads.json").write_text(describe(heads))
            (out / "rare_labels.json").write_text(json.dumps({h.group.column: h.rare_labels for h in heads},
                                                             indent=2))
            for head in heads:
                (out / f"head_{head.group.column}.npz").write_bytes(head.to_bytes())
            mlflow.log_artifacts(str(out))
    return heads, run.info.run_id, per_label
