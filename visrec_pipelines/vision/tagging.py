"""Semantic tags for every item, from all sources, and their quality against known labels."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from .colours import colour_tags
from .heads import COLOUR_BLOCK, IGNORED_LABELS, MULTI_SEPARATOR, held_out_mask
from .images import ImageRejected, load_rgb
from .label_groups import is_colour_vocabulary
from .tags import Tag, head_tags, imagenet_tags, merge_tags, tag_accuracy, tags_to_json, tags_to_text, top_tag


def head_kinds(head_probabilities: list[dict] | None) -> dict[str, str]:
    """The tag kind of each head's labels: its column name, except that when no column is called
    "colour" the colour-naming group with the most labels ("Dark Blue", "Off White", ...) gives the
    colour tags: the shop's own colour words rather than the 12 pixel colour names."""
    if not head_probabilities:
        return {}
    groups = head_probabilities[0]
    kinds = {group: group for group in groups}
    colour_groups = [g for g, labels in groups.items() if is_colour_vocabulary(labels)]
    if "colour" not in kinds and colour_groups:
        kinds[max(colour_groups, key=lambda g: len(groups[g]))] = "colour"
    return kinds


def _catalogue_says(kind: str, kinds: dict[str, str], head_probabilities) -> bool:
    """Does a head with decisions (not a bare probability table) name this kind?"""
    return any(k == kind and hasattr(head_probabilities[0][g], "decided") for g, k in kinds.items())


def _undecided_colours(item: dict, kinds: dict[str, str]) -> dict:
    """A colour head that never saw the product's pixels (image features only) does not overrule
    the pixel colour names: its labels are plain probabilities again, merged with theirs. (On a
    120-item demo shop such a head names 86% of colours right; the pixels ~100%.)"""
    return {group: dict(scores) if kinds.get(group) == "colour" and hasattr(scores, "decided")
            and COLOUR_BLOCK not in getattr(scores, "evidence", ()) else scores
            for group, scores in item.items()}


def _colours(path: str) -> list[Tag]:
    try:
        return colour_tags(load_rgb(path)[0])
    except ImageRejected:  # the image changed since validation: no colour evidence, not a crash
        return []


def tag_items(item_ids: list[str], image_paths: list[str], top_classes: np.ndarray | None,
              top_probs: np.ndarray | None, head_probabilities: list[dict] | None,
              detections: list[list[Tag]] | None = None, min_confidence: float = 0.3,
              max_tags: int = 8, workers: int = 2) -> pd.DataFrame:
    """One row per item: the merged tags (JSON), readable text, and the top category/colour.
    Where a calibrated head decides the category (or colour), ImageNet's category guesses become
    plain "object" evidence (or the pixel colour names are left out): the catalogue's own
    vocabulary names the item."""
    kinds = head_kinds(head_probabilities)
    if head_probabilities:
        head_probabilities = [_undecided_colours(item, kinds) for item in head_probabilities]
    head_colour = bool(head_probabilities) and _catalogue_says("colour", kinds, head_probabilities)
    head_category = bool(head_probabilities) and _catalogue_says("category", kinds, head_probabilities)
    with ThreadPoolExecutor(workers) as pool:  # PIL decoding releases the GIL
        colour_lists = list(pool.map(_colours, image_paths)) if not head_colour else [[] for _ in image_paths]
    rows = []
    for i, item_id in enumerate(item_ids):
        sources = [colour_lists[i]]
        if top_classes is not None:
            guesses = imagenet_tags(top_classes[i], top_probs[i])
            if head_category:
                guesses = [Tag(t.name, t.confidence, t.source, "object") if t.kind == "category" else t
                           for t in guesses]
            sources.append(guesses)
        if head_probabilities is not None:
            sources.append(head_tags(head_probabilities[i], kinds=kinds))
        if detections is not None:
            sources.append(detections[i])
        tags = merge_tags(sources, min_confidence=min_confidence, max_tags=max_tags)
        rows.append({"item_id": item_id, "tags": tags_to_json(tags), "tag_text": tags_to_text(tags),
                     "top_category": top_tag(tags, "category"), "top_colour": top_tag(tags, "colour"),
                     "tag_names": [t.name for t in tags]})
    return pd.DataFrame(rows)


def tag_quality(tags: pd.DataFrame, catalogue: pd.DataFrame, multi_label_columns: list[str]) -> dict:
    """Accuracy of top colour/category tags where the catalogue knows the truth, on the held-out
    items the heads never saw (colour too: heads name it now), and precision/recall of multi-label
    tags such as genres."""
    merged = catalogue.merge(tags, on="item_id")
    held_out = held_out_mask(merged["item_id"])
    quality: dict[str, float] = {}
    for column, top, rows in (("colour", "top_colour", held_out), ("category", "top_category", held_out)):
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
