"""Semantic tags for every item, from all sources, and their quality against known labels."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from .colours import colour_tags
from .heads import IGNORED_LABELS, MULTI_SEPARATOR, held_out_mask
from .images import ImageRejected, load_rgb
from .tags import Tag, head_tags, imagenet_tags, merge_tags, tag_accuracy, tags_to_json, tags_to_text, top_tag


def _colours(path: str) -> list[Tag]:
    try:
        return colour_tags(load_rgb(path)[0])
    except ImageRejected:  # the image changed since validation: no colour evidence, not a crash
        return []


def tag_items(item_ids: list[str], image_paths: list[str], top_classes: np.ndarray | None,
              top_probs: np.ndarray | None, head_probabilities: list[dict] | None,
              detections: list[list[Tag]] | None = None, min_confidence: float = 0.3,
              max_tags: int = 8, workers: int = 2) -> pd.DataFrame:
    """One row per item: the merged tags (JSON), readable text, and the top category/colour."""
    with ThreadPoolExecutor(workers) as pool:  # PIL decoding releases the GIL
        colour_lists = list(pool.map(_colours, image_paths))
    rows = []
    for i, item_id in enumerate(item_ids):
        sources = [colour_lists[i]]
        if top_classes is not None:
            sources.append(imagenet_tags(top_classes[i], top_probs[i]))
        if head_probabilities is not None:
            sources.append(head_tags(head_probabilities[i]))
        if detections is not None:
            sources.append(detections[i])
        tags = merge_tags(sources, min_confidence=min_confidence, max_tags=max_tags)
        rows.append({"item_id": item_id, "tags": tags_to_json(tags), "tag_text": tags_to_text(tags),
                     "top_category": top_tag(tags, "category"), "top_colour": top_tag(tags, "colour"),
                     "tag_names": [t.name for t in tags]})
    return pd.DataFrame(rows)


def tag_quality(tags: pd.DataFrame, catalogue: pd.DataFrame, multi_label_columns: list[str]) -> dict:
    """Accuracy of top colour/category tags where the catalogue knows the truth (category on the
    held-out items the heads never saw), and precision/recall of multi-label tags such as genres."""
    merged = catalogue.merge(tags, on="item_id")
    held_out = held_out_mask(merged["item_id"])
    quality: dict[str, float] = {}
    for column, top, rows in (("colour", "top_colour", np.ones(len(merged), bool)),
                              ("category", "top_category", held_out)):
        if column in merged.columns and merged.loc[rows, column].notna().any():
            quality[f"{column}_accuracy"] = tag_accuracy(merged.loc[rows, top], merged.loc[rows, column])
    for column in multi_label_columns:
        subset = merged[held_out & merged[column].notna().to_numpy()]
        labels, hits, predicted_total, true_total = _all_labels(catalogue[column]), 0, 0, 0
        for truth_text, names in zip(subset[column], subset["tag_names"]):
            truth = {g.lower() for g in str(truth_text).split(MULTI_SEPARATOR) if g not in IGNORED_LABELS}
            predicted = {n.lower() for n in names} & labels
            hits += len(truth & predicted)
            predicted_total += len(predicted)
            true_total += len(truth)
        quality[f"{column}_precision"] = hits / predicted_total if predicted_total else 0.0
        quality[f"{column}_recall"] = hits / true_total if true_total else 0.0
    return quality


def _all_labels(values: pd.Series) -> set[str]:
    return {v.lower() for v in set(values.dropna().str.split(MULTI_SEPARATOR).explode()) - IGNORED_LABELS}


def detector_tag_lists(detector, image_paths: list[str], batch_size: int = 8,
                       min_score: float = 0.3) -> list[list[Tag]]:
    """Run the configured object detector over every image, in small batches."""
    from .detection import detector_tags

    out: list[list[Tag]] = []
    for start in range(0, len(image_paths), batch_size):
        images = []
        for path in image_paths[start:start + batch_size]:
            try:
                images.append(load_rgb(path)[0])
            except ImageRejected:
                images.append(None)
        found = iter(detector.detect([im for im in images if im is not None]))
        out.extend(detector_tags(next(found), min_score) if im is not None else [] for im in images)
    return out


def unchanged_tags(previous: pd.DataFrame, catalogue_ids, changed) -> pd.DataFrame:
    """The rows of an earlier ``tag_items`` table that still hold: items still in the catalogue
    and not among ``changed``."""
    return previous[previous["item_id"].isin(set(catalogue_ids) - set(changed))]


def combine_tag_tables(kept: pd.DataFrame, fresh: pd.DataFrame, catalogue_ids) -> pd.DataFrame:
    """Kept and freshly computed tag rows together, in catalogue order."""
    order = {item_id: n for n, item_id in enumerate(catalogue_ids)}
    merged = pd.concat([kept, fresh], ignore_index=True)
    return merged.sort_values("item_id", key=lambda c: c.map(order)).reset_index(drop=True)
