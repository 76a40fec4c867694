"""Text as content: which columns are text, an incremental store keyed by model id, text search."""
import hashlib

import numpy as np
import pandas as pd
import pytest

from visrec_pipelines.vision.text_embeddings import (
    aligned_text_features,
    item_texts,
    open_text_store,
    text_columns,
    update_text_embeddings,
)
from visrec_pipelines.vision.text_search import TextSearch

ITEMS = pd.DataFrame({
    "item_id": ["a", "b", "c", "d", "e"],
    "title": ["Sunny sundress", "Winter coat", "Ankle boots", "Beach shorts", "Evening gown"],
    "description": ["A light floral sundress in airy cotton for warm days.",
                    "A heavy wool coat with a deep collar and lined pockets.",
                    "Leather ankle boots with a block heel and a side zip.",
                    "Loose shorts in quick-drying fabric with an elastic waist.",
                    "A long silk gown with a low back and a side slit."],
    "colour": ["Red", "Red", "Black", "Blue", "Blue"],
})
TAGS = [["Red", "Dress"], ["Red", "Coat"], ["Black", "Boots"], ["Blue", "Shorts"], ["Blue", "Dress"]]


class FakeEncoder:
    """Deterministic vectors from a hash of the text: enough to test storage, not meaning."""
    model_id, dim = "text-fake:000000000000", 8

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += len(texts)
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], np.uint8).astype(np.float32) for t in texts]
        rows = np.stack(rows) if rows else np.zeros((0, 8), np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_title_and_descriptions_are_text_labels_are_not():
    assert text_columns(ITEMS) == ["title", "description"]
    assert item_texts(ITEMS).iloc[0] == "Sunny sundress. A light floral sundress in airy cotton for warm days."


def test_text_store_embeds_only_new_or_changed_text(tmp_path):
    encoder = FakeEncoder()
    store = open_text_store(tmp_path, encoder)
    first = update_text_embeddings(store, encoder, ITEMS)
    assert (first.embedded, first.unchanged) == (5, 0) and store.path.name == "text-fake_000000000000"
    changed = ITEMS.copy()
    changed.loc[0, "description"] = "Now in linen."
    changed = pd.concat([changed.iloc[:4], pd.DataFrame({"item_id": ["f"], "title": [None],
                                                         "description": [None], "colour": ["Red"]})])
    second = update_text_embeddings(store, encoder, changed)
    assert (second.embedded, second.unchanged, second.removed) == (1, 3, 1)   # a changed, e gone
    assert second.without_text == ["f"] and encoder.calls == 6
    vectors = aligned_text_features(store, ["a", "f", "b"], encoder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), [1, 0, 1], atol=1e-5)


def test_items_that_share_a_text_share_one_encoding_of_it(tmp_path, monkeypatch):
    from visrec_pipelines.vision import text_embeddings

    monkeypatch.setattr(text_embeddings, "DEDUPE_ITEMS", 4)             # repeats across two chunks too
    variants = pd.DataFrame({"item_id": [f"v{i}" for i in range(7)],
                             "title": ["Winter coat", "Winter coat", "Ankle boots", "Winter coat",
                                       "Ankle boots", "Evening gown", "Winter coat"]})
    encoder = FakeEncoder()
    store = open_text_store(tmp_path, encoder)
    report = update_text_embeddings(store, encoder, variants, batch_size=2)
    assert report.embedded == 7 and report.distinct_texts == encoder.calls == 2 + 3   # per chunk of 4
    vectors = aligned_text_features(store, variants["item_id"], encoder.dim)
    np.testing.assert_allclose(vectors, encoder.encode(variants["title"].tolist()), atol=1e-6)


def test_word_search_finds_the_planted_item_through_its_tags():
    search = TextSearch(ITEMS["item_id"], item_texts(ITEMS), TAGS)          # no text model
    assert search.search("red dress", k=1)[0][0] == "a"
    assert search.search("", k=3) == []


@pytest.fixture(scope="module")
def minilm():
    from visrec_pipelines.vision.text_embeddings import shared_text_encoder
    return shared_text_encoder()   # from the wheel, offline; loaded once for the module


def test_sentence_model_loads_offline_and_search_understands_meaning(minilm, tmp_path):
    vectors = minilm.encode(item_texts(ITEMS).tolist())
    assert vectors.shape == (5, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert minilm.model_id.startswith("text-all-MiniLM-L6-v2:")
    search = TextSearch(ITEMS["item_id"], item_texts(ITEMS), TAGS, vectors, minilm)
    assert search.search("red summer dress", k=1)[0][0] == "a"
    assert search.search("outerwear for freezing weather", k=1)[0][0] == "b"   # no word in common
    restored = TextSearch.load(search.save(tmp_path / "search.npz"), minilm)
    assert restored.search("red summer dress", k=2) == search.search("red summer dress", k=2)
