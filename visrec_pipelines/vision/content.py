"""An item's content as named feature blocks, read from the incremental stores the assets fill.

{"image": encoder features, "colour": the product's colour descriptor, "text": the title and
description's sentence embedding (only when the catalogue has text)}: the input of the heads
(``heads.train_heads``), the tags and the similarity space, in the order of ``item_ids``.
"""
from __future__ import annotations

import numpy as np

from .embedding_store import EmbeddingStore
from .heads import COLOUR_BLOCK, IMAGE_BLOCK, TEXT_BLOCK
from .product_colour import aligned_descriptors
from .text_embeddings import aligned_text_features


def content_blocks(image_store: EmbeddingStore, item_ids, colour_store: EmbeddingStore | None = None,
                   text_store: EmbeddingStore | None = None) -> tuple[list[str], dict[str, np.ndarray]]:
    """(the ids that have an image vector, {block: (n, d)} aligned with them)."""
    ids, features, _, _ = image_store.load(item_ids)
    ids = [str(i) for i in ids]
    blocks = {IMAGE_BLOCK: features}
    if colour_store is not None:
        blocks[COLOUR_BLOCK] = aligned_descriptors(colour_store, ids)
    if text_store is not None and text_store.dim:
        blocks[TEXT_BLOCK] = aligned_text_features(text_store, ids, text_store.dim)
    return ids, blocks
