"""The product's own colour as numbers a head can learn a shop's colour names from.

``colour_descriptor`` separates the product from a plain studio backdrop (``colours._object_mask``:
the border's median colour, and pixels near it, are backdrop) and describes the product pixels as a
histogram over perceptual colour bins (Oklab: lightness x hue x chroma), plus the mean and the
dominant cluster's colour. A catalogue's vocabulary ("Dark Blue", "Off White", "Light Pink") is
then learned from these numbers by the same calibrated heads as any label group
(``content_features`` appends the descriptor to the image features), so no hand-made mapping
from pixel names to the shop's names is needed. ``basic_colour_share`` keeps the readable
12-name pixel naming (``colours``) for catalogues without a colour column.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from PIL import Image

from .colours import _kmeans, _object_mask, _working_pixels, srgb_to_oklab
from .embedding_store import EmbeddingStore
from .embedding_stream import EmbeddingBatch
from .images import ImageRejected, load_rgb

ACHROMATIC_CHROMA = 4.0            # Oklab x100: below this a pixel reads as black/grey/white
LIGHTNESS_EDGES = (25.0, 45.0, 65.0, 85.0)   # 5 lightness bands
HUE_SECTORS = 12
GREY_LEVELS = 8                    # lightness bins for achromatic pixels
CHROMA_SPLIT = 10.0                # muted vs saturated
HISTOGRAM_DIM = GREY_LEVELS + HUE_SECTORS * (len(LIGHTNESS_EDGES) + 1) * 2
DESCRIPTOR_DIM = HISTOGRAM_DIM + 3 + 3 + 2


def colour_descriptor(image: Image.Image, exclude_backdrop: bool = True) -> np.ndarray:
    """float32 (DESCRIPTOR_DIM,): sqrt of the product pixels' colour histogram, their mean Oklab,
    the dominant cluster's Oklab, the product's share of the picture and the histogram's spread."""
    lab = srgb_to_oklab(_working_pixels(image))
    mask = _object_mask(lab) if exclude_backdrop else np.ones(lab.shape[:2], bool)
    pixels = lab[mask]
    lightness, a, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    chroma = np.hypot(a, b)
    grey = chroma < ACHROMATIC_CHROMA
    histogram = np.zeros(HISTOGRAM_DIM, np.float64)
    grey_bin = np.clip((lightness[grey] / 100 * GREY_LEVELS).astype(int), 0, GREY_LEVELS - 1)
    np.add.at(histogram, grey_bin, 1.0)
    hue = (np.degrees(np.arctan2(b, a)) % 360)[~grey]
    sector = (hue / (360 / HUE_SECTORS)).astype(int) % HUE_SECTORS
    band = np.searchsorted(LIGHTNESS_EDGES, lightness[~grey])
    saturated = (chroma[~grey] >= CHROMA_SPLIT).astype(int)
    chromatic_bin = GREY_LEVELS + (sector * (len(LIGHTNESS_EDGES) + 1) + band) * 2 + saturated
    np.add.at(histogram, chromatic_bin, 1.0)
    histogram /= max(len(pixels), 1)
    centres, labels = _kmeans(pixels[:: max(1, len(pixels) // 1500)], 3)
    dominant = centres[np.bincount(labels).argmax()]
    spread = float(np.sqrt(histogram).sum())  # many bins filled: patterned or multi-coloured
    extras = np.concatenate([pixels.mean(axis=0) / 50, dominant / 50,
                             [mask.mean(), spread / 10]])
    return np.concatenate([np.sqrt(histogram), extras]).astype(np.float32)


def _descriptor_of(path) -> np.ndarray:
    try:
        return colour_descriptor(load_rgb(path)[0])
    except (ImageRejected, OSError):  # unreadable now: no colour evidence rather than a crash
        return np.zeros(DESCRIPTOR_DIM, np.float32)


def colour_descriptors(image_paths, workers: int = 2) -> np.ndarray:
    """(n, DESCRIPTOR_DIM) for image files (PIL decoding releases the GIL: threads help)."""
    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(_descriptor_of, image_paths))
    return np.stack(rows) if rows else np.zeros((0, DESCRIPTOR_DIM), np.float32)


def colour_distribution(descriptors: np.ndarray) -> np.ndarray:
    """Unit rows of the sqrt colour histogram: their inner product is the Bhattacharyya overlap of
    two products' colour distributions (1 = the same colours in the same shares)."""
    histogram = np.asarray(descriptors, np.float32)[:, :HISTOGRAM_DIM]
    norms = np.linalg.norm(histogram, axis=1, keepdims=True)
    return histogram / np.where(norms > 0, norms, 1.0)


DESCRIPTOR_ID = f"colour-oklab-histogram-{DESCRIPTOR_DIM}:v1"   # a new descriptor = a new store folder


def open_colour_store(root) -> EmbeddingStore:
    return EmbeddingStore(root, DESCRIPTOR_ID, {"descriptor": "product pixels, Oklab histogram + moments"},
                          DESCRIPTOR_DIM)


def update_colour_descriptors(store: EmbeddingStore, catalogue: pd.DataFrame, resolve,
                              batch_size: int = 256) -> tuple[int, int, int]:
    """Describe the images that are new or changed (keyed like image embeddings: item_id + the
    image's sha256), drop removed items; returns (described now, unchanged, removed)."""
    plan = store.plan(catalogue[["item_id", "sha256", "image_path"]])
    with store.writer() as writer:
        for start in range(0, len(plan.to_embed), batch_size):
            chunk = plan.to_embed.iloc[start:start + batch_size]
            vectors = colour_descriptors([resolve(p) for p in chunk["image_path"]])
            writer.write(EmbeddingBatch(chunk["item_id"].tolist(), chunk["sha256"].tolist(), vectors,
                                        None, None, []))
    if plan.to_remove:
        store.remove(plan.to_remove)
    return len(plan.to_embed), plan.unchanged, len(plan.to_remove)


def aligned_descriptors(store: EmbeddingStore, item_ids) -> np.ndarray:
    """(n, DESCRIPTOR_DIM) in ``item_ids`` order; zero rows (no colour evidence) for items missing."""
    return store.aligned(item_ids, DESCRIPTOR_DIM)
