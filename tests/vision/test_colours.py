"""Colour tags name the object's colour (not the backdrop's), also for patterned items."""
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from visrec_pipelines.data.demo import COLOURS, PATTERNS, draw_product, generate_demo
from visrec_pipelines.vision.colours import COLOUR_NAMES, colour_name, colour_shares, colour_tags, srgb_to_oklab
from visrec_pipelines.vision.images import load_rgb
from visrec_pipelines.vision.tags import tag_accuracy, top_tag


@pytest.mark.parametrize("rgb, name", [
    ((255, 0, 0), "red"), ((128, 0, 0), "red"), ((220, 20, 60), "red"), ((222, 109, 112), "red"),
    ((255, 140, 0), "orange"), ((255, 127, 80), "orange"), ((255, 215, 0), "yellow"), ((225, 173, 1), "yellow"),
    ((0, 160, 0), "green"), ((128, 128, 0), "green"), ((0, 128, 128), "blue"), ((0, 0, 128), "blue"),
    ((135, 206, 235), "blue"), ((128, 0, 128), "purple"), ((200, 180, 230), "purple"),
    ((255, 105, 180), "pink"), ((255, 182, 193), "pink"), ((139, 69, 19), "brown"), ((193, 154, 107), "brown"),
    ((225, 205, 170), "beige"), ((195, 176, 145), "beige"), ((10, 10, 10), "black"), ((45, 45, 48), "black"),
    ((250, 250, 250), "white"), ((245, 242, 230), "white"), ((128, 128, 128), "grey"), ((112, 128, 144), "grey"),
])
def test_colour_names_match_what_people_call_them(rgb, name):
    assert colour_name(srgb_to_oklab(np.array(rgb))) == name


def test_every_demo_colour_reads_as_itself_with_every_pattern():
    """Patterns are drawn in a lighter tint of the base colour; that must not change its name
    (a black shirt with mid-grey checks is still black)."""
    rng = np.random.default_rng(0)
    for colour in COLOURS:
        for pattern in PATTERNS:
            image = draw_product("t-shirt", colour, pattern, 128, rng)
            assert colour_shares(image)[0][0] == colour, (colour, pattern, colour_shares(image))


def _object_on(backdrop, fill, size=(120, 90), box=(30, 20, 80, 70)) -> Image.Image:
    image = Image.new("RGB", size, backdrop)
    ImageDraw.Draw(image).ellipse(box, fill=fill)
    return image


def test_backdrop_is_excluded_whatever_its_colour():
    assert colour_shares(_object_on((236, 236, 236), (200, 30, 40))) == [("red", 1.0)]
    assert colour_shares(_object_on((20, 20, 20), (250, 250, 250)))[0] == ("white", 1.0)
    assert colour_shares(_object_on((40, 90, 200), (225, 205, 170)))[0] == ("beige", 1.0)
    whole = dict(colour_shares(_object_on((236, 236, 236), (200, 30, 40)), exclude_backdrop=False))
    assert whole.keys() >= {"white", "red"} and whole["white"] > whole["red"]  # e.g. for posters


def test_shares_split_between_colours_and_plain_images_are_their_own_colour():
    image = Image.new("RGB", (100, 100), (240, 240, 240))
    ImageDraw.Draw(image).rectangle((20, 20, 79, 49), fill=(30, 60, 200))
    ImageDraw.Draw(image).rectangle((20, 50, 79, 79), fill=(240, 200, 20))
    shares = dict(colour_shares(image))
    assert set(shares) == {"blue", "yellow"} and shares["blue"] == pytest.approx(0.5, abs=0.1)
    assert colour_shares(Image.new("RGB", (50, 50), (30, 150, 60))) == [("green", 1.0)]


def test_a_busy_border_means_the_whole_picture_counts():
    """A poster has no plain backdrop: all four quarters are content, none is dropped."""
    image = Image.new("RGB", (80, 120))
    for (x, y), fill in zip([(0, 0), (40, 0), (0, 60), (40, 60)], [(200, 30, 40), (30, 60, 200), (30, 150, 60),
                                                                   (240, 200, 20)]):
        image.paste(fill, (x, y, x + 40, y + 60))
    shares = {tag.name: tag.confidence for tag in colour_tags(image)}  # resampled seams are < 5%
    assert set(shares) == {"red", "blue", "green", "yellow"}
    assert all(share == pytest.approx(0.25, abs=0.05) for share in shares.values())


def test_colour_tags_are_well_formed_deterministic_and_accept_any_mode():
    image = draw_product("dress", "purple", "striped", 128, np.random.default_rng(1))
    tags = colour_tags(image)
    assert tags[0].name == "purple" and all(t.kind == "colour" and t.source == "colour" for t in tags)
    assert all(t.name in COLOUR_NAMES and t.confidence >= 0.05 for t in tags)
    assert sum(t.confidence for t in tags) <= 1 + 1e-9
    assert colour_tags(image) == tags
    assert top_tag(colour_tags(image.convert("L")), "colour") == "grey"
    assert colour_tags(Image.new("RGBA", (40, 40), (240, 125, 175, 255)))[0].name == "pink"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("demo"), n_items=200, n_users=5, seed=7)


def test_top_colour_matches_demo_ground_truth_quickly(demo):
    items = pd.read_csv(demo.items_path).set_index("item_id")
    images = {item: load_rgb(demo.root / path)[0] for item, path in items["image_path"].items()}
    started = time.perf_counter()
    predicted = pd.Series({item: top_tag(colour_tags(image), "colour") for item, image in images.items()})
    per_image_ms = 1000 * (time.perf_counter() - started) / len(images)
    accuracy = tag_accuracy(predicted, items["colour"])
    confusion = pd.crosstab(items["colour"], predicted.reindex(items.index))
    assert accuracy >= 0.9, f"colour accuracy {accuracy:.3f}\n{confusion}"
    assert per_image_ms < 25, f"{per_image_ms:.1f} ms per image (about 2 ms when the machine is idle)"


@pytest.mark.shared_data
def test_real_posters_get_colour_tags(movielens_path):
    posters = sorted((movielens_path / "posters").glob("*.jpg"))[:5]
    assert posters
    for poster in posters:
        for exclude_backdrop in (True, False):
            tags = colour_tags(load_rgb(poster)[0], exclude_backdrop=exclude_backdrop)
            assert tags and all(t.name in COLOUR_NAMES for t in tags)
