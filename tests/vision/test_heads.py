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


def imbalanced(n=900, n_classes=30, dim=48, seed=1):
    """Many classes of very unequal sizes (the last ones rare), features = class centre + noise."""
    rng = np.random.default_rng(seed)
    sizes = 1.0 / np.arange(1, n_classes + 1) ** 2
    labels = rng.choice([f"c{k}" for k in range(n_classes)], n, p=sizes / sizes.sum())
    centres = {f"c{k}": rng.standard_normal(dim) for k in range(n_classes)}
    features = np.stack([centres[label] for label in labels]) + 1.2 * rng.standard_normal((n, dim))
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "kind": labels})
    return items, features.astype(np.float32)


def test_heads_beat_majority_and_stay_calibrated_with_many_imbalanced_classes():
    from visrec_pipelines.vision.heads import LabelGroup
    items, features = imbalanced()
    head = train_head(features, items, LabelGroup("kind", False, ()))
    majority = items["kind"].value_counts(normalize=True).iloc[0]
    assert head.metrics["accuracy"] > majority + 0.3
    assert head.metrics["expected_calibration_error"] < 0.1        # confidences mean what they say
    assert head.rare_labels and min(head.rare_labels.values()) < 2   # reported, not silently dropped
    assert "(other)" in head.group.labels                         # rare items form "none of these"
    decided = head.decide(head.predict(features[:20]))
    assert all(len(d) == 1 and d[0] != "(other)" for d in decided)  # always a known label to tag


def test_head_at_least_as_accurate_as_a_plain_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    from visrec_pipelines.vision.heads import LabelGroup
    items, features = imbalanced(seed=2)
    head = train_head(features, items, LabelGroup("kind", False, ()))
    test = held_out_mask(items["item_id"])
    probe = LogisticRegression(max_iter=1000).fit(features[~test], items["kind"][~test])
    assert head.metrics["accuracy"] >= (probe.predict(features[test]) == items["kind"][test]).mean() - 0.02


def test_multi_label_thresholds_are_chosen_out_of_fold():
    items, features = catalogue()
    head = train_head(features, items, next(g for g in find_label_groups(items) if g.multi_label))
    assert head.thresholds.shape == (3,) and ((head.thresholds > 0) & (head.thresholds < 1)).all()
    assert head.metrics["micro_f1"] > 0.8


def test_variants_share_one_fit_and_a_missing_block_is_left_out():
    from visrec_pipelines.vision.heads import LabelGroup, train_head_variants
    items, features = catalogue()
    noise = np.random.default_rng(5).standard_normal((len(items), 16)).astype(np.float32)
    variants = train_head_variants({"image": features, "text": noise}, items, LabelGroup("colour", False, ()),
                                   {"image": ("image",), "both": ("image", "text")})
    both = variants["both"]
    assert [name for name, _ in both.blocks] == ["image", "text"]
    assert both.metrics["fusion.text"] < both.metrics["fusion.image"]     # noise gets little weight
    without_text = both.predict({"image": features[:50]}, allow_missing=True)
    assert (without_text.argmax(1) == variants["image"].predict(features[:50]).argmax(1)).mean() > 0.9
    restored = TrainedHead.from_bytes(both.to_bytes())
    blocks = {"image": features[:5], "text": noise[:5]}
    np.testing.assert_allclose(restored.predict(blocks), both.predict(blocks), atol=1e-6)
    assert restored.rare_labels == both.rare_labels
