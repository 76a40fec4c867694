"""The evaluation split of any dataset folder, built as the pipeline builds it, for offline work
(benchmarks, notebooks) that runs without Dagster: items validated, images checked and embedded,
events validated, then ``split.make_split`` with the image features and catalogue content.

The image features are cached by dataset name, encoder id and a digest of the accepted images'
bytes, so a benchmark embeds a catalogue once.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.contract import Dataset
from .item_content import item_content
from .split import Split, make_split


def folder_split(dataset: Dataset, cache_dir: Path, encoder=None, progress: bool = False,
                 **split_options) -> tuple[Split, str]:
    """(split, encoder id) of ``dataset``: the catalogue is the valid items whose image is
    accepted and embeds; events pass the behaviour suite (unknown users/items set aside).
    ``split_options`` go to ``make_split`` (e.g. ``implicit_positive_types=("purchase",)``)."""
    from ..quality.behaviour import image_candidates, validate_events, validate_items
    from ..vision.images import validate_images

    items = dataset.read_items()
    valid = validate_items(items).valid
    accepted, _ = validate_images(image_candidates(items), dataset.image_file, progress=progress)
    accepted = accepted[accepted["item_id"].isin(valid["item_id"])]
    ids, features, encoder_id = image_features(dataset, accepted, cache_dir, encoder, progress)
    users = dataset.read_users()
    events = validate_events(dataset.read_events(), known_item_ids=items["item_id"].dropna(),
                             known_user_ids=None if users is None else users["user_id"].dropna()).valid
    split = make_split(events, ids, **split_options).with_item_features(features)
    catalogue = valid.drop_duplicates("item_id")
    return split.with_item_content(item_content(catalogue, split.train.item_ids)), encoder_id


def image_features(dataset: Dataset, accepted: pd.DataFrame, cache_dir: Path, encoder=None,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """(item ids, features, encoder id) of the accepted images that embed, in catalogue order."""
    if encoder is None:
        from ..vision.encoders import build_encoder
        encoder = build_encoder()
    digest = hashlib.sha256("\n".join(accepted["item_id"].astype(str) + ":" + accepted["sha256"].astype(str))
                            .encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{dataset.name}_{encoder.encoder_id.replace(':', '-')}_{digest}.npz"
    if path.is_file():
        cached = np.load(path)
        return cached["item_ids"], cached["features"], encoder.encoder_id
    from ..vision.embedding_stream import embed_images

    records = ((row.item_id, dataset.image_file(row.image_path)) for row in accepted.itertuples())
    ids, parts = [], []
    for batch in embed_images(records, encoder, progress=progress, total=len(accepted)):
        ids += batch.item_ids
        parts.append(batch.features)
    features = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, item_ids=np.asarray(ids, dtype=str), features=features)
    return np.asarray(ids, dtype=str), features, encoder.encoder_id
