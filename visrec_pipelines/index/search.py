"""Search by image: an uploaded picture → the platform's encoder → nearest catalogue items.

The picture goes through the same decode path (``load_rgb``: size, pixel-count and type limits,
normalisation) and the same preprocessing as the catalogue, so its vector lives in the same space.
"""
from __future__ import annotations

from typing import BinaryIO

from ..vision.encoders import ImageEncoder
from ..vision.images import ImageLimits, load_rgb


def image_vector(image: bytes | BinaryIO, encoder: ImageEncoder, limits: ImageLimits = ImageLimits()):
    """One unit vector for an uploaded image; raises ImageRejected (with a reason) for bad input."""
    picture, _notes = load_rgb(image, limits)
    return encoder.encode(encoder.preprocessing.to_tensor(picture)[None]).features[0]


def search_by_image(image: bytes | BinaryIO, encoder: ImageEncoder, index, k: int = 10,
                    category: str | None = None, tags=None, limits: ImageLimits = ImageLimits()):
    """[(item_id, score)] of the k most similar catalogue items (any index with ``search_vector``)."""
    return index.search_vector(image_vector(image, encoder, limits), k=k, category=category, tags=tags)
