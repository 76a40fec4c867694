"""Transfer learning: calibrated heads over the pretrained features for the catalogue's own labels.

One head per label group (``label_groups.find_label_groups``: demo category/colour/pattern,
MovieLens genres, any label column of an imported shop, however many labels it has). A head is a
well-regularised linear model per feature block (image features, and where given text embeddings
and the product's colour descriptor), fused and calibrated on out-of-fold predictions
(``head_training``). It is fitted on the items outside the held-out slice (a stable hash of
item_id, so a new run never leaks an old test item into training) and measured on that slice.

Why linear, not the earlier MLP: on the fashion catalogue the MLP fell below a plain logistic
regression on the same features for most groups, and a 50-label cap dropped the product types.
"""
from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .head_training import OTHER, fit_head
from .label_groups import (  # noqa: F401  (re-exported: the heads' vocabulary)
    IGNORED_LABELS,
    MULTI_SEPARATOR,
    RESERVED_COLUMNS,
    LabelGroup,
    find_label_groups,
    held_out_mask,
    label_lists,
    targets,
)
from .linear_models import sigmoid, softmax

IMAGE_BLOCK, COLOUR_BLOCK, TEXT_BLOCK = "image", "colour", "text"   # the feature blocks' names
MIN_TRAIN_ITEMS, MIN_HELD_OUT_ITEMS = 10, 2
# labelled training items a head is fitted on at most (CV over ~40 fits): above, a fixed random
# sample, so a catalogue of 100k items costs what one of 12k does (accuracy above 12k: not measured)
MAX_TRAIN_ITEMS = 12_000
Blocks = Mapping[str, np.ndarray]


class TooFewLabels(ValueError):
    """A label group with too few labelled items to train and measure a head."""


class LabelScores(dict):
    """{label: probability} of one item and group, plus the labels the head decided on and the
    feature blocks it saw (``tagging`` lets a colour head replace pixel colour names only if it
    saw the product's pixels itself)."""

    def __init__(self, probabilities: dict[str, float], decided: tuple[str, ...], evidence: tuple[str, ...] = ()):
        super().__init__(probabilities)
        self.decided, self.evidence = decided, evidence


@dataclass
class TrainedHead:
    group: LabelGroup                      # labels: the learned ones (+ OTHER if rare ones exist)
    blocks: tuple[tuple[str, int], ...]    # (block name, width), in the order predict expects
    weights: np.ndarray                    # (sum of widths, n_labels) on the raw features
    bias: np.ndarray
    thresholds: np.ndarray                 # multi-label decision bars, chosen out-of-fold
    block_bias: np.ndarray | None = None   # (blocks, n_labels): each block's share of bias
    metrics: dict = field(default_factory=dict)
    per_label: pd.DataFrame | None = None
    rare_labels: dict[str, int] = field(default_factory=dict)
    out_of_fold: pd.DataFrame | None = None   # item_id -> cross-validated probabilities (not saved)

    def predict(self, blocks: Blocks | np.ndarray, allow_missing: bool = False) -> np.ndarray:
        """(n, n_labels) calibrated probabilities: softmax (single-label) or sigmoids.
        ``blocks``: the concatenated features, or {block name: features}. With allow_missing, a
        block that is not given (no text for a query image) is left out of the product of experts."""
        if not isinstance(blocks, Mapping):
            logits = np.asarray(blocks, np.float32) @ self.weights + self.bias
        else:
            logits, offset = np.zeros(1, np.float32) + self.bias, 0
            for b, (name, width) in enumerate(self.blocks):
                if name in blocks:
                    logits = logits + np.asarray(blocks[name], np.float32) @ self.weights[offset:offset + width]
                elif allow_missing and self.block_bias is not None:
                    logits = logits - self.block_bias[b]
                else:
                    raise KeyError(f"head {self.group.column!r} needs the feature block {name!r}")
                offset += width
        return sigmoid(logits) if self.group.multi_label else softmax(logits)

    def decide(self, probs: np.ndarray) -> list[tuple[str, ...]]:
        """The labels to tag: labels over their threshold, or the most probable known label."""
        labels = np.asarray(self.group.labels)
        if self.group.multi_label:
            return [tuple(labels[row >= self.thresholds]) for row in probs]
        known = probs.copy()
        known[:, labels == OTHER] = -1.0  # "other" is no tag: the best known label is the guess
        return [(labels[j],) for j in known.argmax(1)]

    def to_bytes(self) -> bytes:
        meta = {"group": asdict(self.group), "blocks": self.blocks, "metrics": self.metrics,
                "rare_labels": self.rare_labels}
        buffer = io.BytesIO()
        np.savez(buffer, weights=self.weights, bias=self.bias, thresholds=self.thresholds,
                 block_bias=self.block_bias if self.block_bias is not None else np.zeros((0, 0), np.float32),
                 meta=np.array(json.dumps(meta)))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> TrainedHead:
        saved = np.load(io.BytesIO(blob), allow_pickle=False)
        meta = json.loads(str(saved["meta"]))
        group = LabelGroup(**{**meta["group"], "labels": tuple(meta["group"]["labels"])})
        block_bias = saved["block_bias"] if saved["block_bias"].size else None
        return cls(group, tuple((name, int(width)) for name, width in meta["blocks"]), saved["weights"],
                   saved["bias"], saved["thresholds"], block_bias, meta["metrics"], None, meta["rare_labels"])


def train_head(features: Blocks | np.ndarray, items: pd.DataFrame, group: LabelGroup,
               epochs: int | None = None, hidden: int | None = None, seed: int = 0,
               **settings) -> TrainedHead:
    """Fit on the labelled items outside the held-out slice, measure on the held-out ones.
    ``features``: the image features, or {block name: (n, d)} rows aligned with ``items``.
    (``epochs``/``hidden`` belonged to the old MLP heads and are ignored.)"""
    blocks = dict(features) if isinstance(features, Mapping) else {IMAGE_BLOCK: np.asarray(features)}
    return train_head_variants(blocks, items, group, {"all": tuple(blocks)}, seed=seed, **settings)["all"]


def train_head_variants(blocks: Blocks, items: pd.DataFrame, group: LabelGroup,
                        variants: Mapping[str, tuple[str, ...]], seed: int = 0,
                        **settings) -> dict[str, TrainedHead]:
    """One head per variant (a subset of the blocks, e.g. {"image": ("image",), "content": ("image",
    "text")}), all from one fit: each block is cross-validated once, each variant fused on its own."""
    labels = label_lists(items[group.column], group.multi_label)
    has_label = np.array([bool(row) for row in labels])
    held_out = held_out_mask(items["item_id"])
    train, test = ~held_out & has_label, held_out & has_label
    if train.sum() < MIN_TRAIN_ITEMS or test.sum() < MIN_HELD_OUT_ITEMS:
        raise TooFewLabels(f"too few labelled items for {group.column!r}: {train.sum()} train, "
                           f"{test.sum()} held out")
    if train.sum() > MAX_TRAIN_ITEMS:        # a large catalogue: a fixed sample, bounded time and memory
        keep = np.random.default_rng(seed).choice(np.flatnonzero(train), MAX_TRAIN_ITEMS, replace=False)
        train = np.zeros_like(train)
        train[keep] = True
    used = [name for name in blocks if any(name in v for v in variants.values())]
    try:
        fitted = fit_head({n: np.asarray(blocks[n])[train] for n in used},
                          [labels[i] for i in np.flatnonzero(train)], group.multi_label, seed=seed, **settings)
    except ValueError as reason:
        raise TooFewLabels(f"{group.column!r}: {reason}") from reason
    held = np.flatnonzero(test)
    trained_ids = items["item_id"].astype(str).to_numpy()[np.flatnonzero(train)]
    out = {}
    for variant, names in variants.items():
        part = fitted if set(names) >= set(used) else fitted.restricted(names)
        weights, bias, block_bias = part.folded()
        head = TrainedHead(LabelGroup(group.column, group.multi_label, part.labels),
                           tuple((b.name, int(np.asarray(blocks[b.name]).shape[1])) for b in part.blocks),
                           weights, bias, part.thresholds.astype(np.float32), block_bias,
                           rare_labels=part.rare_labels)
        head.out_of_fold = pd.DataFrame(part.cv_probs, index=pd.Index(trained_ids[part.cv_rows], name="item_id"),
                                        columns=list(part.labels))
        head.metrics, head.per_label = evaluate(head, {b: np.asarray(blocks[b])[held] for b, _ in head.blocks},
                                                [labels[i] for i in held])
        head.metrics.update(train_items=int(train.sum()), held_out_items=int(test.sum()),
                            rare_labels=len(part.rare_labels), **part.cv)
        out[variant] = head
    return out


def train_heads(blocks: Blocks, items: pd.DataFrame, groups: list[LabelGroup] | None = None,
                min_support: int = 2, **settings) -> tuple[list[TrainedHead], list[str]]:
    """A head for every label group of ``items`` (found from the data unless given); returns the
    heads and why any group got none."""
    heads, skipped = [], []
    for group in groups if groups is not None else find_label_groups(items, min_support=min_support):
        try:
            heads.append(train_head(blocks, items, group, **settings))
        except TooFewLabels as reason:   # a small catalogue: say so, train the others
            skipped.append(str(reason))
    return heads, skipped


def evaluate(head: TrainedHead, blocks: Blocks | np.ndarray, truth: list[list[str]]) -> tuple[dict, pd.DataFrame]:
    """Held-out figures. Single-label accuracy counts every labelled item, also those whose label the
    head could not learn (rare or unseen): they count as wrong, as they would in the shop."""
    probs = head.predict(blocks)
    decided = head.decide(probs)
    names = [label for label in head.group.labels if label != OTHER]
    index = {label: j for j, label in enumerate(names)}
    y, predicted = np.zeros((len(truth), len(names))), np.zeros((len(truth), len(names)))
    for i, (true, guess) in enumerate(zip(truth, decided)):
        y[i, [index[t] for t in true if t in index]] = 1
        predicted[i, [index[g] for g in guess if g in index]] = 1
    tp, n_pred, n_true = (predicted * y).sum(0), predicted.sum(0), y.sum(0)
    precision = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
    recall = np.divide(tp, n_true, out=np.zeros_like(tp), where=n_true > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    per_label = pd.DataFrame({"label": names, "precision": precision, "recall": recall, "f1": f1,
                              "support": n_true.astype(int)})
    supported = per_label[per_label["support"] > 0]
    metrics = {"macro_precision": float(supported["precision"].mean()),
               "macro_recall": float(supported["recall"].mean()), "macro_f1": float(supported["f1"].mean())}
    if head.group.multi_label:
        all_true = sum(len(t) for t in truth)  # labels the head never learned are missed too
        metrics.update(micro_precision=float(tp.sum() / max(predicted.sum(), 1)),
                       micro_recall=float(tp.sum() / max(all_true, 1)))
        p, r = metrics["micro_precision"], metrics["micro_recall"]
        metrics["micro_f1"] = 2 * p * r / (p + r) if p + r else 0.0
    else:
        hits = [bool(t) and g[0] == t[0] for t, g in zip(truth, decided)]
        metrics["accuracy"] = float(np.mean(hits))
        metrics["expected_calibration_error"] = _calibration_error(probs.max(1), np.asarray(hits))
    return metrics, per_label


def _calibration_error(confidence: np.ndarray, hit: np.ndarray, bins: int = 10) -> float:
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gaps = [abs(confidence[which == b].mean() - hit[which == b].mean()) * (which == b).mean()
            for b in range(bins) if (which == b).any()]
    return float(sum(gaps))


def label_probabilities(heads: list[TrainedHead], features: Blocks | np.ndarray) -> list[dict[str, LabelScores]]:
    """Per item: {label group: {label: probability}} with the head's decisions attached — the
    input of ``tags.head_tags``."""
    out: list[dict] = [{} for _ in range(len(next(iter(features.values())) if isinstance(features, Mapping)
                                              else features))]
    for head in heads:
        probs = head.predict(features, allow_missing=True)
        seen = tuple(name for name, _ in head.blocks if not isinstance(features, Mapping) or name in features)
        for row, decided, item in zip(probs, head.decide(probs), out):
            item[head.group.column] = LabelScores(
                {label: float(p) for label, p in zip(head.group.labels, row) if label != OTHER}, decided, seen)
    return out


def describe(heads: list[TrainedHead]) -> str:
    return json.dumps({h.group.column: {"multi_label": h.group.multi_label, "labels": list(h.group.labels),
                                        "rare_labels": h.rare_labels, **h.metrics} for h in heads}, indent=2)
