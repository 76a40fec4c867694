"""Similar items: the learned space raises same-label neighbours, stays unit-length, degrades to raw."""
import numpy as np
import pandas as pd

from visrec_pipelines.index.exact import ExactIndex
from visrec_pipelines.vision.heads import held_out_mask, train_heads
from visrec_pipelines.vision.similarity import SimilaritySpace, fit_similarity_space, nearest


def planted(n=600, dim=64, seed=0):
    """Image features dominated by a nuisance factor (pose, lighting) that is not a label; the
    labels are a weaker signal, as for real product photos."""
    rng = np.random.default_rng(seed)
    kinds, colours = rng.choice(["dress", "shoe", "bag", "hat"], n), rng.choice(["red", "blue", "black"], n)
    basis = rng.standard_normal((8, dim))
    nuisance = rng.integers(0, 20, n)
    nuisance_vectors = rng.standard_normal((20, dim)) * 3
    codes = {"dress": 0, "shoe": 1, "bag": 2, "hat": 3, "red": 4, "blue": 5, "black": 6}
    image = nuisance_vectors[nuisance] + np.stack([basis[codes[k]] + basis[codes[c]] for k, c in zip(kinds, colours)])
    image += rng.standard_normal((n, dim))
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "kind": kinds, "colour": colours})
    return items, (image / np.linalg.norm(image, axis=1, keepdims=True)).astype(np.float32)


def share_of_same(vectors, labels, queries):
    neighbours = nearest(vectors, queries, 10)
    return float(np.mean([labels[q] == labels[n] for q, row in zip(queries, neighbours) for n in row]))


def test_learned_space_raises_same_label_neighbours_on_held_out_queries():
    items, image = planted()
    heads, _ = train_heads({"image": image}, items)
    space = fit_similarity_space({"image": image}, items, heads)
    vectors = space.vectors({"image": image})
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)  # inner product = cosine
    queries = np.flatnonzero(held_out_mask(items["item_id"]))
    for column in ("kind", "colour"):
        labels = items[column].to_numpy()
        assert share_of_same(vectors, labels, queries) > share_of_same(image, labels, queries) + 0.15
    assert space.label_weight > 0
    index = ExactIndex(items["item_id"], vectors)    # what serving and Milvus search
    assert len(index.similar_items("i0", k=5)) == 5


def test_without_labels_the_vectors_are_the_raw_embeddings():
    items, image = planted()
    space = fit_similarity_space({"image": image}, items[["item_id"]], [])
    np.testing.assert_allclose(space.vectors({"image": image}), image, atol=1e-6)
    assert "no label groups" in space.report["reason"]


def test_space_round_trips_and_serves_a_query_image_without_text():
    items, image = planted(n=300)
    text = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    heads, _ = train_heads({"image": image, "text": text}, items)
    space = fit_similarity_space({"image": image, "text": text}, items, heads)
    restored = SimilaritySpace.from_bytes(space.to_bytes())
    np.testing.assert_allclose(restored.vectors({"image": image[:4], "text": text[:4]}),
                               space.vectors({"image": image[:4], "text": text[:4]}), atol=1e-5)
    query = restored.vectors({"image": image[:1]})                    # a photo: no text
    assert query.shape[1] == space.vectors({"image": image[:1], "text": text[:1]}).shape[1]


def test_the_index_is_rebuilt_only_when_the_space_changes(tmp_path):
    from visrec_pipelines.vision.similarity import index_needs_rebuild

    items, image = planted(n=200)
    heads, _ = train_heads({"image": image}, items)
    space = fit_similarity_space({"image": image}, items, heads)
    path = tmp_path / "space.npz"
    assert index_needs_rebuild(path, space)                      # none written yet
    space.save(path)
    again = fit_similarity_space({"image": image}, items, train_heads({"image": image}, items)[0])
    assert not index_needs_rebuild(path, again)                  # same data, same space: in place
    other, _ = train_heads({"image": image[::-1].copy()}, items)
    assert index_needs_rebuild(path, fit_similarity_space({"image": image[::-1].copy()}, items, other))
