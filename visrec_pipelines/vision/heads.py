"""Transfer learning: classifier heads over the frozen pretrained image features.

The catalogue's own labels (demo category/colour/pattern, MovieLens genres, any label column of an
imported shop) become heads on top of the ImageNet encoder: a small MLP per label group, trained on
80% of the labelled items and scored on the held-out 20% (split by a stable hash of item_id, so a
new run never leaks an old test item into training).
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

MULTI_SEPARATOR = "|"
IGNORED_LABELS = {"", "(no genres listed)"}
MULTI_LABEL_THRESHOLD = 0.3  # the same bar semantic_tags applies (TagConfig.min_confidence)
RESERVED_COLUMNS = {"item_id", "image_path", "title", "added_at", "width", "height", "sha256"}


@dataclass(frozen=True)
class LabelGroup:
    column: str
    multi_label: bool
    labels: tuple[str, ...]


def find_label_groups(items: pd.DataFrame, max_labels: int = 50, min_support: int = 5) -> list[LabelGroup]:
    """Columns that look like labels: few distinct values, or pipe-separated multi-labels."""
    groups = []
    for column in items.columns:
        if column in RESERVED_COLUMNS:
            continue
        values = items[column].dropna().astype(str)
        multi = values.str.contains(MULTI_SEPARATOR, regex=False).any()
        exploded = values.str.split(MULTI_SEPARATOR).explode() if multi else values
        counts = exploded[~exploded.isin(IGNORED_LABELS)].value_counts()
        labels = tuple(sorted(counts[counts >= min_support].index))
        if 2 <= len(labels) <= max_labels:
            groups.append(LabelGroup(column, bool(multi), labels))
    return groups


def targets(items: pd.DataFrame, group: LabelGroup) -> np.ndarray:
    """(n_items, n_labels) 0/1 matrix; rows without any known label are all zero."""
    index = {label: j for j, label in enumerate(group.labels)}
    y = np.zeros((len(items), len(group.labels)), dtype=np.float32)
    for i, value in enumerate(items[group.column]):
        parts = str(value).split(MULTI_SEPARATOR) if group.multi_label else [value]
        for part in parts if value is not None else []:
            if part in index:
                y[i, index[part]] = 1.0
    return y


def held_out_mask(item_ids: pd.Series, fraction: float = 0.2) -> np.ndarray:
    buckets = [int(hashlib.sha1(str(i).encode()).hexdigest()[:8], 16) % 1000 for i in item_ids]
    return np.asarray(buckets) < int(fraction * 1000)


class TooFewLabels(ValueError):
    """A label group with too few labelled items to train and measure a head."""


@dataclass
class TrainedHead:
    group: LabelGroup
    model: nn.Module
    metrics: dict = field(default_factory=dict)         # overall figures
    per_label: pd.DataFrame | None = None              # precision/recall/f1/support on held-out

    def predict(self, features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
            probs = torch.sigmoid(logits) if self.group.multi_label else torch.softmax(logits, dim=1)
        return probs.numpy()

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"group": self.group.__dict__, "state": self.model.state_dict(),
                    "dims": _dims(self.model)}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> TrainedHead:
        saved = torch.load(io.BytesIO(blob), weights_only=False)
        group = LabelGroup(**{**saved["group"], "labels": tuple(saved["group"]["labels"])})
        model = _mlp(*saved["dims"])
        model.load_state_dict(saved["state"])
        return cls(group=group, model=model.eval())


def _mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Module:
    return nn.Sequential(nn.Dropout(0.2), nn.Linear(dim_in, hidden), nn.ReLU(), nn.Linear(hidden, dim_out))


def _dims(model: nn.Module) -> tuple[int, int, int]:
    return model[1].in_features, model[1].out_features, model[3].out_features


def train_head(features: np.ndarray, items: pd.DataFrame, group: LabelGroup, epochs: int = 150,
               hidden: int = 256, seed: int = 0) -> TrainedHead:
    """Full-batch Adam on the labelled items outside the held-out slice; metrics on the held-out."""
    y = targets(items, group)
    labelled = y.sum(axis=1) > 0
    test = held_out_mask(items["item_id"]) & labelled
    train = ~held_out_mask(items["item_id"]) & labelled
    if train.sum() < 10 or test.sum() < 2:
        raise TooFewLabels(f"too few labelled items for {group.column!r}: {train.sum()} train, {test.sum()} held out")
    torch.manual_seed(seed)
    model = _mlp(features.shape[1], hidden, len(group.labels))
    x_train, y_train = torch.from_numpy(features[train]), torch.from_numpy(y[train])
    if group.multi_label:
        # Unweighted: calibrated probabilities, so one threshold reads as "likely" for every label
        # (a positive weight per label doubled recall but cut tag precision to ~0.26 on posters).
        loss_fn, target = nn.BCEWithLogitsLoss(), y_train
    else:
        loss_fn, target = nn.CrossEntropyLoss(), y_train.argmax(1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # matrices this small gain nothing from threads and lose a lot under load
    try:
        for _ in range(epochs):
            optimiser.zero_grad()
            loss_fn(model(x_train), target).backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    head = TrainedHead(group=group, model=model.eval())
    head.metrics, head.per_label = evaluate(head, features[test], y[test])
    head.metrics.update(train_items=int(train.sum()), held_out_items=int(test.sum()))
    return head


def evaluate(head: TrainedHead, features: np.ndarray, y: np.ndarray) -> tuple[dict, pd.DataFrame]:
    probs = head.predict(features)
    if head.group.multi_label:
        predicted = (probs >= MULTI_LABEL_THRESHOLD).astype(np.float32)
    else:
        predicted = np.eye(len(head.group.labels), dtype=np.float32)[probs.argmax(1)]
    tp = (predicted * y).sum(0)
    precision = np.divide(tp, predicted.sum(0), out=np.zeros_like(tp), where=predicted.sum(0) > 0)
    recall = np.divide(tp, y.sum(0), out=np.zeros_like(tp), where=y.sum(0) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    per_label = pd.DataFrame({"label": head.group.labels, "precision": precision, "recall": recall,
                              "f1": f1, "support": y.sum(0).astype(int)})
    supported = per_label[per_label["support"] > 0]
    metrics = {"macro_precision": float(supported["precision"].mean()),
               "macro_recall": float(supported["recall"].mean()),
               "macro_f1": float(supported["f1"].mean())}
    if head.group.multi_label:
        metrics["micro_precision"] = float(tp.sum() / max(predicted.sum(), 1))
        metrics["micro_recall"] = float(tp.sum() / max(y.sum(), 1))
    else:
        metrics["accuracy"] = float((probs.argmax(1) == y.argmax(1)).mean())
    return metrics, per_label


def label_probabilities(heads: list[TrainedHead], features: np.ndarray) -> list[dict[str, dict[str, float]]]:
    """Per item: {label group: {label: probability}} — the input of ``tags.head_tags``."""
    out: list[dict] = [{} for _ in range(len(features))]
    for head in heads:
        probs = head.predict(features)
        for row, item in zip(probs, out):
            item[head.group.column] = {label: float(p) for label, p in zip(head.group.labels, row)}
    return out


def describe(heads: list[TrainedHead]) -> str:
    return json.dumps({h.group.column: {"multi_label": h.group.multi_label, "labels": list(h.group.labels),
                                        **h.metrics} for h in heads}, indent=2)
