"""The product's colour, not the studio's: descriptors ignore the backdrop, heads learn the shop's words."""
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from visrec_pipelines.vision.heads import LabelGroup, train_head
from visrec_pipelines.vision.product_colour import DESCRIPTOR_DIM, colour_descriptor, colour_distribution


def product(fill, backdrop=(245, 245, 245), size=(96, 128), box=(24, 20, 72, 110)) -> Image.Image:
    image = Image.new("RGB", size, backdrop)
    ImageDraw.Draw(image).rounded_rectangle(box, radius=8, fill=fill)
    return image


def test_backdrop_is_excluded_from_the_descriptor():
    on_white = colour_descriptor(product((190, 30, 40)))
    on_grey = colour_descriptor(product((190, 30, 40), backdrop=(200, 200, 205)))
    whole = colour_descriptor(product((190, 30, 40)), exclude_backdrop=False)
    assert on_white.shape == (DESCRIPTOR_DIM,)
    same = (colour_distribution(on_white[None]) @ colour_distribution(on_grey[None]).T).item()
    with_backdrop = (colour_distribution(on_white[None]) @ colour_distribution(whole[None]).T).item()
    assert same > 0.99 and with_backdrop < 0.9     # the studio's colour changes nothing


def test_a_head_learns_the_shops_colour_words_from_pixels():
    rng = np.random.default_rng(0)
    shades = {"Dark Blue": (25, 40, 110), "Light Blue": (150, 185, 230), "Dark Red": (110, 20, 25),
              "Light Pink": (245, 190, 205), "Off White": (236, 230, 215), "Black": (20, 20, 22)}
    rows, labels = [], []
    for k in range(240):
        name = list(shades)[k % len(shades)]
        fill = tuple(int(np.clip(c + rng.normal(0, 8), 0, 255)) for c in shades[name])
        rows.append(colour_descriptor(product(fill, backdrop=(255, 255, 255))))
        labels.append(name)
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(240)], "colour": labels})
    head = train_head({"colour": np.stack(rows)}, items, LabelGroup("colour", False, ()))
    assert head.metrics["accuracy"] > 0.9          # "Off White" on a white backdrop included


def test_colour_store_describes_only_new_or_changed_images(tmp_path):
    from visrec_pipelines.vision.product_colour import (
        aligned_descriptors,
        open_colour_store,
        update_colour_descriptors,
    )

    for name, fill in (("a", (190, 30, 40)), ("b", (30, 60, 200))):
        product(fill).save(tmp_path / f"{name}.png")
    catalogue = pd.DataFrame({"item_id": ["a", "b"], "sha256": ["1", "2"], "image_path": ["a.png", "b.png"]})
    store = open_colour_store(tmp_path / "stores")
    resolve = lambda p: str(tmp_path / p)   # noqa: E731
    assert update_colour_descriptors(store, catalogue, resolve) == (2, 0, 0)
    changed = catalogue.iloc[[1]].assign(sha256="3")             # a removed, b has a new picture
    assert update_colour_descriptors(store, changed, resolve) == (1, 0, 1)
    rows = aligned_descriptors(store, ["a", "b"])
    assert not rows[0].any() and rows[1].any()                   # a gone: no colour evidence
