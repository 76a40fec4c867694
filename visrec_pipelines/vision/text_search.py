"""Text search: a query ("red summer dress") -> the items that match it, by what they say and show.

Each item is found through four views, scored against the query and summed with fixed weights:
its title + description as a sentence embedding (meaning: "summer" ~ "lightweight"), the same text
as words (TF-IDF: exact names such as "Shape Up"), and its tags (the heads' decided labels, colour,
pattern...) both as an embedding and as words, so an item whose description never says "black"
is still found as black when its picture is. Without a text model the word views still work.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

# Weights of (text meaning, tag meaning, text words, tag words), chosen on the fashion catalogue's
# TRAINING items (queries = colour + category label pairs, tags from out-of-fold head decisions):
# P@10 0.60 for (1, 1, .5, 1), 0.63-0.64 with tag words at 2; text words alone are the weakest view
# for label queries but the only one that knows product names ("Shape Up"), so they keep a little.
DEFAULT_WEIGHTS = (1.0, 1.0, 0.25, 2.0)


class TextSearch:
    def __init__(self, item_ids: Sequence[str], texts: Sequence[str], tag_lists: Sequence[Sequence[str]],
                 text_vectors: np.ndarray | None = None, encoder=None,
                 weights: tuple[float, float, float, float] = DEFAULT_WEIGHTS):
        self.item_ids = np.asarray([str(i) for i in item_ids])
        self.texts = [str(t or "") for t in texts]
        self.tag_lists = [[str(tag) for tag in tags] for tags in tag_lists]
        if not len(self.item_ids) == len(self.texts) == len(self.tag_lists):
            raise ValueError("item_ids, texts and tag_lists must have the same length")
        self.encoder, self.weights = encoder, weights
        self.text_vectors = None if text_vectors is None or encoder is None else np.asarray(text_vectors, np.float32)
        self._text_words = _words(self.texts)
        self._tag_words = _words([" ; ".join(tags) for tags in self.tag_lists])
        self.tag_vectors = self._tag_meaning() if encoder is not None else None

    def _tag_meaning(self) -> np.ndarray:
        """Each distinct tag embedded once; an item's vector is the mean of its tags' vectors."""
        vocabulary = sorted({tag for tags in self.tag_lists for tag in tags})
        embedded = dict(zip(vocabulary, self.encoder.encode(vocabulary))) if vocabulary else {}
        out = np.zeros((len(self.tag_lists), self.encoder.dim), np.float32)
        for row, tags in enumerate(self.tag_lists):
            if tags:
                mean = np.mean([embedded[t] for t in tags], axis=0)
                out[row] = mean / max(float(np.linalg.norm(mean)), 1e-9)
        return out

    def scores(self, query: str) -> np.ndarray:
        """One score per item (higher = better match)."""
        w_text, w_tags, w_text_words, w_tag_words = self.weights
        total = np.zeros(len(self.item_ids), np.float32)
        for weight, view in ((w_text_words, self._text_words), (w_tag_words, self._tag_words)):
            if view is not None and weight:
                vectoriser, matrix = view
                total += weight * (matrix @ vectoriser.transform([query]).T).toarray().ravel()
        if self.encoder is not None:
            q = self.encoder.encode([query])[0]
            if self.text_vectors is not None and w_text:
                total += w_text * (self.text_vectors @ q)
            if self.tag_vectors is not None and w_tags:
                total += w_tags * (self.tag_vectors @ q)
        return total

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        """The k best items for the query, best first: [(item_id, score)]."""
        if not str(query).strip() or not len(self.item_ids):
            return []
        s = self.scores(query)
        top = np.argsort(-s, kind="stable")[:k]
        return [(self.item_ids[i], float(s[i])) for i in top]

    def save(self, path: str | Path) -> Path:
        """Items, texts, tags and text vectors (no pickle); the query model is loaded on open."""
        path = Path(path)
        arrays = {"item_ids": self.item_ids, "texts": np.asarray(self.texts, dtype=str),
                  "tags": np.asarray(["\x1f".join(t) for t in self.tag_lists], dtype=str),
                  "weights": np.asarray(self.weights, np.float32)}
        if self.text_vectors is not None:
            arrays["text_vectors"] = self.text_vectors
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, encoder=None) -> TextSearch:
        saved = np.load(path, allow_pickle=False)
        tags = [t.split("\x1f") if t else [] for t in saved["tags"]]
        vectors = saved["text_vectors"] if "text_vectors" in saved.files else None
        return cls(saved["item_ids"], list(saved["texts"]), tags, vectors, encoder,
                   tuple(float(w) for w in saved["weights"]))


def _words(documents: list[str]):
    """(vectoriser, L2-normalised TF-IDF matrix), or None when there are no words at all."""
    vectoriser = TfidfVectorizer(lowercase=True, sublinear_tf=True, stop_words="english",
                                 token_pattern=r"(?u)\b\w+\b")
    try:
        return vectoriser, vectoriser.fit_transform(documents)
    except ValueError:   # empty vocabulary
        return None
