"""Similar items that agree with the catalogue: image (+ text) embeddings joined with what the heads
believe about each item's labels, as unit vectors searched by inner product (Milvus, ExactIndex).

An item's vector is the concatenation of unit-length parts, each scaled by the square root of its
weight, then normalised again:
- the raw image embedding (what it looks like),
- per label group the square root of the head's calibrated probabilities (so the inner product of
  two items is their Bhattacharyya agreement: likely the same product type / colour / pattern),
- the text embedding (what it is called and described as), when there is text,
- the product's colour distribution (``product_colour.colour_distribution``), when given.
The inner product of two items is then the weighted mean of the agreements. The weights are
chosen on the training items, with the heads' out-of-fold (cross-validated) probabilities, to
maximise the share of the 10 nearest neighbours that share each label group's label (a tie goes to
the smaller label weight, so neighbours keep looking alike). Within equal labels, neighbours are
still ordered by how alike they look. Measured on the fashion catalogue: using the shop's true
labels for the catalogue items instead of the heads' beliefs gave fewer agreeing neighbours (the
beliefs of query and catalogue agree with each other better), and weighting groups by how
redundant they are (normalised mutual information) changed nothing that mattered. Without label
groups the vectors are the raw image embeddings: nothing to learn, nothing lost.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_atomically
from .heads import COLOUR_BLOCK, IMAGE_BLOCK, TEXT_BLOCK, TrainedHead
from .label_groups import label_lists
from .product_colour import HISTOGRAM_DIM, colour_distribution

LABEL_WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0)
TIE = 0.002   # agreements this close count as equal: then the less label-driven setting wins
TEXT_WEIGHTS = COLOUR_WEIGHTS = (0.0, 0.5, 1.0)
NEIGHBOURS = 10
MAX_QUERIES = 1000


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def label_part(heads: list[TrainedHead], probabilities: list[np.ndarray]) -> np.ndarray:
    """sqrt of every head's probabilities, each group unit length, all groups weighing the same."""
    parts = [unit(np.sqrt(np.clip(p, 0, None))) for p in probabilities]
    return np.hstack(parts) / np.sqrt(len(parts)) if parts else np.zeros((0, 0), np.float32)


@dataclass
class SimilaritySpace:
    heads: list[TrainedHead]
    image_weight: float = 1.0
    label_weight: float = 0.0
    text_weight: float = 0.0
    text_dim: int = 0
    colour_weight: float = 0.0
    report: dict = field(default_factory=dict)

    def vectors(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """Unit vectors for items (or a query image) given their feature blocks; blocks a head or
        the text part needs but that are not given (a query image has no text) are left out."""
        image = np.asarray(blocks[IMAGE_BLOCK], np.float32)
        parts = [np.sqrt(self.image_weight) * unit(image)]
        if self.label_weight and self.heads:
            probs = [head.predict(blocks, allow_missing=True) for head in self.heads]
            parts.append(np.sqrt(self.label_weight) * label_part(self.heads, probs))
        if self.text_weight and self.text_dim:
            text = blocks.get(TEXT_BLOCK)
            text = np.zeros((len(image), self.text_dim), np.float32) if text is None else unit(text)
            parts.append(np.sqrt(self.text_weight) * text)
        if self.colour_weight:
            colour = blocks.get(COLOUR_BLOCK)
            parts.append(np.sqrt(self.colour_weight) * (np.zeros((len(image), HISTOGRAM_DIM), np.float32)
                                                         if colour is None else colour_distribution(colour)))
        return unit(np.hstack(parts))

    @property
    def uses_labels(self) -> bool:
        return bool(self.label_weight and self.heads)

    def to_bytes(self) -> bytes:
        meta = {"image_weight": self.image_weight, "label_weight": self.label_weight,
                "text_weight": self.text_weight, "text_dim": self.text_dim,
                "colour_weight": self.colour_weight, "report": self.report}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)),
                 **{f"head_{n}": np.frombuffer(h.to_bytes(), np.uint8) for n, h in enumerate(self.heads)})
        return buffer.getvalue()

    def fingerprint(self) -> str:
        """What the vectors depend on (the archive's bytes also hold write times)."""
        digest = hashlib.sha256(json.dumps([self.image_weight, self.label_weight, self.text_weight,
                                            self.text_dim, self.colour_weight]).encode())
        for head in self.heads:
            for part in (head.weights, head.bias, head.block_bias):
                digest.update(b"" if part is None else np.ascontiguousarray(part).tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> None:
        write_atomically(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> SimilaritySpace:
        return cls.from_bytes(Path(path).read_bytes())

    @classmethod
    def from_bytes(cls, blob: bytes) -> SimilaritySpace:
        saved = np.load(io.BytesIO(blob), allow_pickle=False)
        meta = json.loads(str(saved["meta"]))
        heads = [TrainedHead.from_bytes(saved[f"head_{n}"].tobytes())
                 for n in range(sum(k.startswith("head_") for k in saved.files))]
        return cls(heads, **meta)


def fit_similarity_space(blocks: Mapping[str, np.ndarray], items: pd.DataFrame,
                         heads: list[TrainedHead]) -> SimilaritySpace:
    """Weights chosen on the training items (those the heads have out-of-fold probabilities for)."""
    text_dim = int(blocks[TEXT_BLOCK].shape[1]) if TEXT_BLOCK in blocks else 0
    heads = [h for h in heads if h.out_of_fold is not None and len(h.out_of_fold)]
    if not heads:
        return SimilaritySpace([], text_dim=text_dim, report={"reason": "no label groups: raw image embeddings"})
    ids = items["item_id"].astype(str)
    rows = np.flatnonzero(ids.isin(set.intersection(*(set(h.out_of_fold.index) for h in heads))).to_numpy())
    parts = {"image": unit(blocks[IMAGE_BLOCK][rows]),
             "label": label_part(heads, [h.out_of_fold.loc[ids.iloc[rows]].to_numpy() for h in heads])}
    grid = {"label": LABEL_WEIGHTS, "text": (0.0,), "colour": (0.0,)}
    if text_dim:
        parts["text"], grid["text"] = unit(blocks[TEXT_BLOCK][rows]), TEXT_WEIGHTS
    if COLOUR_BLOCK in blocks:
        parts["colour"], grid["colour"] = colour_distribution(blocks[COLOUR_BLOCK][rows]), COLOUR_WEIGHTS
    truth = [label_lists(items[h.group.column].iloc[rows], h.group.multi_label) for h in heads]
    queries = np.random.default_rng(0).permutation(len(rows))[:MAX_QUERIES]
    results = {}
    for weights in itertools.product(*grid.values()):
        chosen = [parts["image"]] + [np.sqrt(w) * parts[n] for n, w in zip(grid, weights) if w]
        results[weights] = neighbour_agreement(unit(np.hstack(chosen)), truth, queries)
    best = max(results.values())
    label_weight, text_weight, colour_weight = min((k for k, v in results.items() if v >= best - TIE))
    report = {"selection_items": int(len(rows)), "agreement_raw": results[(0.0, 0.0, 0.0)],
              "agreement_chosen": results[(label_weight, text_weight, colour_weight)]}
    return SimilaritySpace(heads, 1.0, label_weight, text_weight, text_dim, colour_weight, report)


def neighbour_agreement(vectors: np.ndarray, truth: list[list[list[str]]], queries: np.ndarray,
                        k: int = NEIGHBOURS) -> float:
    """Mean over label groups of the share of each query's k nearest neighbours (itself excluded)
    that share a label with it."""
    neighbours = nearest(vectors, queries, k)
    shares = []
    for labels in truth:
        sets = [set(row) for row in labels]
        hits = [len(sets[q] & sets[n]) > 0 for q, row in zip(queries, neighbours) if sets[q] for n in row]
        if hits:
            shares.append(float(np.mean(hits)))
    return float(np.mean(shares)) if shares else 0.0


def nearest(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(len(queries), k) rows of the k most similar other items, best first."""
    scores = vectors[queries] @ vectors.T
    scores[np.arange(len(queries)), queries] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def index_needs_rebuild(space_file, space: SimilaritySpace) -> bool:
    """A new space (heads retrained, weights chosen again) moves every item's vector: the index is
    rebuilt rather than updated in place. Same bytes as the last space written: in place is fine."""
    path = Path(space_file)
    try:
        return SimilaritySpace.load(path).fingerprint() != space.fingerprint()
    except Exception:   # none yet, or unreadable: rebuild, which also rewrites it
        return True
