"""Transfer-learning heads: label discovery, held-out split, learning, persistence."""
import numpy as np
import pandas as pd

from visrec_pipelines.vision.heads import (
    TrainedHead,
    find_label_groups,
    held_out_mask,
    label_probabilities,
    targets,
    train_head,
)


def catalogue(n=300, seed=0):
    rng = np.random.default_rng(seed)
    colours = rng.choice(["red", "blue", "green"], n)
    genres = ["|".join(sorted(set(rng.choice(["Comedy", "Drama", "Horror"], rng.integers(1, 3)))))
              for _ in range(n)]
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "image_path": "x.jpg",
                          "title": [f"t{k}" for k in range(n)], "colour": colours, "genres": genres,
                          "sku": [f"s{k}" for k in range(n)]})
    # features that encode the labels plus noise, as an image encoder's would
    basis = rng.standard_normal((6, 64))
    codes = {"red": 0, "blue": 1, "green": 2, "Comedy": 3, "Drama": 4, "Horror": 5}
    features = rng.standard_normal((n, 64)) * 0.3
    for i, (c, g) in enumerate(zip(colours, genres)):
        features[i] += basis[codes[c]] + sum(basis[codes[x]] for x in g.split("|"))
    return items, (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)


def test_label_groups_found_and_ids_ignored():
    items, _ = catalogue()
    groups = {g.column: g for g in find_label_groups(items)}
    assert set(groups) == {"colour", "genres"}          # sku has too many values, title is reserved
    assert groups["genres"].multi_label and not groups["colour"].multi_label
    y = targets(items, groups["genres"])
    assert y.shape == (300, 3) and (y.sum(1) >= 1).all()


def test_held_out_is_stable_and_about_a_fifth():
    ids = pd.Series([f"i{k}" for k in range(2000)])
    mask = held_out_mask(ids)
    assert 0.15 < mask.mean() < 0.25
    assert (held_out_mask(ids[::-1]).tolist()[::-1]) == mask.tolist()   # order does not matter


def test_heads_learn_and_round_trip():
    items, features = catalogue()
    heads = [train_head(features, items, g, epochs=100) for g in find_label_groups(items)]
    by_column = {h.group.column: h for h in heads}
    assert by_column["colour"].metrics["accuracy"] > 0.9
    assert by_column["genres"].metrics["micro_precision"] > 0.8 and by_column["genres"].metrics["micro_recall"] > 0.8
    assert set(by_column["colour"].per_label["label"]) == {"red", "blue", "green"}
    restored = TrainedHead.from_bytes(by_column["genres"].to_bytes())
    np.testing.assert_allclose(restored.predict(features[:5]), by_column["genres"].predict(features[:5]), atol=1e-6)
    probabilities = label_probabilities(heads, features[:2])
    assert set(probabilities[0]) == {"colour", "genres"}
    assert abs(sum(probabilities[0]["colour"].values()) - 1) < 1e-5
