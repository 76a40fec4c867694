"""Label groups are found from the data: many labels are fine, ids, codes and free text are not labels."""
import numpy as np
import pandas as pd

from visrec_pipelines.vision.label_groups import find_label_groups, held_out_mask, is_colour_vocabulary


def shop(n=600, seed=0):
    rng = np.random.default_rng(seed)
    types = [f"type {k}" for k in range(80)]                       # far more than the old cap of 50
    chosen = rng.choice(types, n)
    codes = {t: str(1000 + k) for k, t in enumerate(types)}
    return pd.DataFrame({
        "item_id": [f"i{k}" for k in range(n)], "title": [f"item {k}" for k in range(n)],
        "product_type": chosen, "product_type_no": [codes[t] for t in chosen],   # a code repeating it
        "colour": rng.choice(["Dark Blue", "Light Pink", "Black", "Off White"], n),
        "sku": [f"S{k:05d}" for k in range(n)],                                   # one per item
        "price": rng.choice(["9.99", "19.99", "24.5", "29.99"], n),               # a quantity
        "description": [f"A soft cotton top with long sleeves and a round neck, number {k}" for k in range(n)],
        "genres": ["|".join(rng.choice(["Drama", "Comedy", "Horror"], 2, replace=False)) for _ in range(n)],
    })


def test_groups_have_no_label_cap_and_skip_ids_codes_and_text():
    groups = {g.column: g for g in find_label_groups(shop(), min_support=2)}
    assert set(groups) == {"product_type", "colour", "genres"}
    assert len(groups["product_type"].labels) > 70           # not silently dropped for having > 50
    assert groups["genres"].multi_label and not groups["colour"].multi_label


def test_the_readable_column_of_two_that_split_items_alike_is_kept():
    items = shop()
    items["product_type"] = items["product_type"].str.replace("type ", "", regex=False)  # digits too
    kept = {g.column for g in find_label_groups(items, min_support=2)}
    assert "product_type_no" not in kept or "product_type" not in kept  # one of the two, never both


def test_colour_vocabularies_are_recognised():
    assert is_colour_vocabulary(["Dark Blue", "Light Pink", "Black", "Off White", "Greyish Beige"])
    assert is_colour_vocabulary(["red", "green", "blue"])
    assert not is_colour_vocabulary(["Dark", "Light", "Dusty Light", "Medium"])
    assert not is_colour_vocabulary(["Dress", "Trousers", "Sweater"])


def test_salted_splits_are_independent_of_the_held_out_one():
    ids = pd.Series([f"i{k}" for k in range(3000)])
    held, validation = held_out_mask(ids), held_out_mask(ids, 0.2, salt="fine-tune")
    assert 0.02 < (held & validation).mean() < 0.06          # ~0.2 * 0.2: unrelated draws
