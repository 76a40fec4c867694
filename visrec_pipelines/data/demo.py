"""The built-in demo dataset: drawn product images and simulated shoppers.

Everything comes from the seed alone (no wall clock, no downloads), so the same arguments always
give byte-identical files. Each shopper has a hidden taste (categories, colours, patterns) that,
together with item popularity and the pull of new arrivals, drives what they view, click, buy and
rate. The taste is written to users.csv as ground truth, so an evaluation can check that a visual
model really recovers it. Because shoppers' latest picks lean to items with little history, a
model that sees the pictures (VBPR: NDCG@20 0.045) clearly beats one that only sees who bought
what (BPR: 0.028) on the default shop.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from tqdm import tqdm

from visrec_pipelines.data.contract import EVENT_COLUMNS, Dataset, write_table

START = np.datetime64("2025-01-01T00:00:00", "s")
DAYS = 120
DAY = 86_400
NEW_ARRIVAL_SHARE = 0.3  # the rest of the catalogue is on sale from day 0
# Name -> RGB that a person would call by that name (jittered only slightly per image).
COLOURS = {
    "red": (205, 30, 35), "orange": (245, 135, 20), "yellow": (240, 205, 30),
    "green": (40, 150, 60), "blue": (35, 85, 205), "purple": (125, 50, 170),
    "pink": (240, 125, 175), "brown": (120, 70, 35), "black": (30, 30, 32),
    "grey": (128, 128, 132),
}
PATTERNS = {"solid": "plain", "striped": "striped", "dotted": "polka-dot", "checked": "checked"}
# Taste outweighs popularity (log-popularity has std 1) so a visual model can beat a popularity
# baseline, but popularity still matters so that baseline is not trivially bad.
TASTE_WEIGHTS = {"category": 2.0, "colour": 1.6, "pattern": 0.8}
FAVOURITE_COUNTS = {"category": (1, 2), "colour": (2, 3), "pattern": (1, 2)}
TASTE_COLUMNS = {"category": "fav_categories", "colour": "fav_colours", "pattern": "fav_patterns"}
POPULARITY_WEIGHT = 0.6
# New arrivals sell: an item's appeal gets a boost that fades over its first weeks on sale. So a
# shopper's latest picks lean to items with little history, which a visual model can still place.
ACTIVITY = (20, 80)      # interactions per shopper: (typical, most)
NOVELTY_WEIGHT = 2.0
NOVELTY_DAYS = 10


def _ellipse(x0: float, y0: float, x1: float, y1: float, n: int = 32) -> list:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles)))


def _rect(x0: float, y0: float, x1: float, y1: float) -> list:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


ADD, CUT = 255, 0
# Silhouettes in a unit square (y down), drawn in order: CUT polygons punch holes.
SHAPES = {
    "t-shirt": [(ADD, [(.38, .14), (.2, .2), (.05, .4), (.16, .48), (.27, .4), (.27, .88), (.73, .88),
                       (.73, .4), (.84, .48), (.95, .4), (.8, .2), (.62, .14), (.56, .21), (.5, .23),
                       (.44, .21)])],
    "dress": [(ADD, [(.37, .08), (.42, .08), (.45, .2), (.55, .2), (.58, .08), (.63, .08), (.65, .3),
                     (.6, .42), (.82, .92), (.18, .92), (.4, .42), (.35, .3)])],
    "trousers": [(ADD, [(.3, .08), (.7, .08), (.76, .92), (.56, .92), (.5, .34), (.44, .92), (.24, .92)])],
    "shoe": [(ADD, [(.06, .68), (.94, .68), (.97, .62), (.93, .56), (.8, .52), (.64, .48), (.52, .4),
                    (.47, .28), (.2, .28), (.12, .38), (.06, .5)]), (ADD, _ellipse(.62, .48, .98, .69)),
             (CUT, _rect(0, .68, 1, .71)), (ADD, _rect(.04, .71, .97, .78))],  # the gap sets off the sole
    "handbag": [(ADD, _ellipse(.3, .12, .7, .62)), (CUT, _ellipse(.36, .18, .64, .62)),
                (ADD, [(.18, .42), (.82, .42), (.88, .86), (.12, .86)])],
    "hat": [(ADD, _ellipse(.05, .54, .95, .76)),
            (ADD, [(.27, .64), (.28, .42), (.32, .3), (.42, .24), (.5, .28), (.58, .24), (.68, .3), (.72, .42),
                   (.73, .64)]), (CUT, _rect(.2, .53, .8, .555))],  # a thin line marks the hat band
    "chair": [(ADD, _rect(.3, .08, .7, .5)), (CUT, _rect(.36, .14, .47, .44)), (CUT, _rect(.53, .14, .64, .44)),
              (ADD, [(.3, .48), (.7, .48), (.78, .58), (.22, .58)]),
              (ADD, _rect(.23, .58, .29, .92)), (ADD, _rect(.71, .58, .77, .92))],
    "lamp": [(ADD, [(.33, .08), (.67, .08), (.8, .44), (.2, .44)]), (ADD, _rect(.47, .44, .53, .82)),
             (ADD, _ellipse(.28, .78, .72, .92))],
}
CATEGORIES = tuple(SHAPES)
ATTRIBUTE_VALUES = {"category": CATEGORIES, "colour": tuple(COLOURS), "pattern": tuple(PATTERNS)}


def generate_demo(out_dir: Path, n_items: int = 3000, n_users: int = 800, seed: int = 0,
                  image_size: int = 128, progress: bool = False) -> Dataset:
    """Write the demo dataset into ``out_dir`` and return it."""
    if n_items < 1 or n_users < 1 or image_size < 32:
        raise ValueError("the demo needs n_items >= 1, n_users >= 1 and image_size >= 32")
    dataset = Dataset(Path(out_dir))
    # Independent streams, so that e.g. changing the drawing never changes the shoppers.
    item_rng, user_rng, event_rng, image_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    items = _make_items(n_items, item_rng)
    users, likes = _make_users(n_users, user_rng)
    events = _simulate_events(items, likes, event_rng)
    _write_images(items, dataset, image_size, image_rng, progress)
    write_table(items[["item_id", "image_path", "title", "category", "colour", "pattern", "added_at"]],
                dataset.items_path)
    write_table(users, dataset.users_path)
    write_table(events, dataset.events_path)
    dataset.write_manifest({
        "source": "demo",
        "params": {"n_items": n_items, "n_users": n_users, "seed": seed, "image_size": image_size},
        "counts": {"items": n_items, "users": n_users, "events": len(events),
                   "new_arrivals": int((items["added_s"] > 0).sum()),
                   "events_by_type": events["event_type"].value_counts().sort_index().to_dict()},
        "timeline": {"start": _iso(np.zeros(1, int))[0], "days": DAYS},
        "categories": list(CATEGORIES), "colours": list(COLOURS), "patterns": list(PATTERNS),
    })
    return dataset


def _iso(seconds: np.ndarray) -> np.ndarray:
    stamps = START + np.asarray(seconds, dtype="int64").astype("timedelta64[s]")
    return np.char.add(np.datetime_as_string(stamps, unit="s"), "Z")


def _make_items(n_items: int, rng: np.random.Generator) -> pd.DataFrame:
    codes = {attr: rng.integers(len(values), size=n_items) for attr, values in ATTRIBUTE_VALUES.items()}
    added_s = np.zeros(n_items, dtype=np.int64)
    new = rng.permutation(n_items)[: int(NEW_ARRIVAL_SHARE * n_items)]
    # Arrivals spread over days 1-100: the last ones are still cold-start items at the end.
    added_s[new] = rng.integers(DAY, 100 * DAY, size=len(new))
    items = pd.DataFrame({"item_id": [f"i{i:05d}" for i in range(n_items)]})
    items["image_path"] = "images/" + items["item_id"] + ".jpg"
    for attr, values in ATTRIBUTE_VALUES.items():
        items[attr] = np.asarray(values)[codes[attr]]
        items[f"{attr}_code"] = codes[attr]
    pattern_words = items["pattern"].map(PATTERNS)
    items["title"] = items["colour"].str.capitalize() + " " + pattern_words + " " + items["category"]
    items["added_s"] = added_s
    items["added_at"] = _iso(added_s)
    items["log_popularity"] = rng.normal(0.0, 1.0, n_items)  # popularity itself is lognormal
    return items


def _make_users(n_users: int, rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """Ground-truth taste: a boolean users x values matrix per attribute."""
    users = pd.DataFrame({"user_id": [f"u{u:04d}" for u in range(n_users)]})
    likes = {}
    for attr, (fewest, most) in FAVOURITE_COUNTS.items():
        values = ATTRIBUTE_VALUES[attr]
        ranks = rng.random((n_users, len(values))).argsort(axis=1).argsort(axis=1)
        likes[attr] = ranks < rng.integers(fewest, most + 1, size=n_users)[:, None]
        users[TASTE_COLUMNS[attr]] = [
            "|".join(v for v, liked in zip(values, row) if liked) for row in likes[attr]]
    return users, likes


def _simulate_events(items: pd.DataFrame, likes: dict, rng: np.random.Generator) -> pd.DataFrame:
    taste = sum(w * likes[attr][:, items[f"{attr}_code"].to_numpy()] for attr, w in TASTE_WEIGHTS.items())
    user, item, t = _choose_items(items, taste, rng)
    match = taste[user, item] / sum(TASTE_WEIGHTS.values())  # 0 = nothing liked, 1 = everything
    return _funnel(items, user, item, t, match, rng)


def _choose_items(items: pd.DataFrame, taste: np.ndarray, rng: np.random.Generator):
    """Each interaction picks an item already on sale with probability proportional to
    exp(utility + novelty): shoppers like what suits their taste, and what just arrived."""
    n_users = taste.shape[0]
    utility = (taste + POPULARITY_WEIGHT * items["log_popularity"].to_numpy()
               + rng.normal(0.0, 0.5, taste.shape))  # idiosyncratic likes beyond the three attributes
    added = items["added_s"].to_numpy()
    # Heavy-tailed activity: most users near the fewest interactions, a few up to the most.
    fewest, most = ACTIVITY
    counts = np.clip(np.rint(fewest * np.exp(rng.exponential(0.5, n_users))), fewest, most).astype(int)
    users, picks, times = [], [], []
    for u in range(n_users):
        t = np.sort(rng.integers(0, (DAYS - 2) * DAY, counts[u]))  # leave room for the funnel
        age_days = (t[:, None] - added[None, :]) / DAY                # (interactions, items)
        novelty = NOVELTY_WEIGHT * np.exp(-np.maximum(age_days, 0.0) / NOVELTY_DAYS)
        weights = np.where(age_days >= 0, np.exp(utility[u] - utility[u].max() + novelty), 0.0)
        cumulative = np.cumsum(weights, axis=1)
        draw = rng.random(len(t)) * cumulative[:, -1]
        chosen = (cumulative < draw[:, None]).sum(axis=1)
        users.append(np.full(len(t), u))
        picks.append(np.minimum(chosen, len(added) - 1))              # minimum: float round-off only
        times.append(t)
    return np.concatenate(users), np.concatenate(picks), np.concatenate(times)


def _funnel(items: pd.DataFrame, user: np.ndarray, item: np.ndarray, t: np.ndarray, match: np.ndarray,
            rng: np.random.Generator) -> pd.DataFrame:
    """Every interaction is a view; better taste matches go further down the funnel."""
    n = len(t)
    clicked = rng.random(n) < 0.08 + 0.6 * match
    carted = clicked & (rng.random(n) < 0.15 + 0.55 * match)
    bought = carted & (rng.random(n) < 0.35 + 0.55 * match)
    rated = clicked & (rng.random(n) < 0.25)
    stars = np.clip(np.rint(1.5 + 3.5 * match + rng.normal(0, 0.7, n)), 1, 5).astype(int).astype(str)
    click_t = t + rng.integers(3, 60, n)
    cart_t = click_t + rng.integers(20, 600, n)
    buy_t = cart_t + rng.integers(60, 1800, n)
    rate_t = buy_t + rng.integers(3600, DAY, n)
    none, one = np.full(n, None, dtype=object), np.full(n, "1", dtype=object)
    stages = [(np.ones(n, bool), "view", t, none), (clicked, "click", click_t, none),
              (carted, "add_to_cart", cart_t, one), (bought, "purchase", buy_t, one),
              (rated, "rating", rate_t, stars.astype(object))]
    parts = [pd.DataFrame({"u": user[keep], "i": item[keep], "stage": rank, "event_type": name,
                           "value": value[keep], "s": when[keep]})
             for rank, (keep, name, when, value) in enumerate(stages)]
    events = pd.concat(parts, ignore_index=True).sort_values(["s", "u", "i", "stage"], kind="stable")
    events["user_id"] = [f"u{u:04d}" for u in events["u"]]
    events["item_id"] = items["item_id"].to_numpy()[events["i"].to_numpy()]
    events["timestamp"] = _iso(events["s"].to_numpy())
    return events[list(EVENT_COLUMNS)].reset_index(drop=True)


def _write_images(items, dataset: Dataset, size: int, rng, progress: bool) -> None:
    if dataset.images_dir.exists():
        shutil.rmtree(dataset.images_dir)  # regenerating must not leave images of removed items
    dataset.images_dir.mkdir(parents=True)
    rows = items[["image_path", "category", "colour", "pattern"]].itertuples(index=False)
    for path, category, colour, pattern in tqdm(rows, total=len(items), desc="demo images",
                                                disable=not progress):
        # No chroma subsampling: it would bleed the colour of thin parts and fine patterns.
        image = draw_product(category, colour, pattern, size, rng)
        image.save(dataset.root / path, "JPEG", quality=90, subsampling=0)


def draw_product(category: str, colour: str, pattern: str, size: int, rng) -> Image.Image:
    """A product photo: the patterned, outlined silhouette with a soft shadow on a light backdrop."""
    mask = _silhouette(SHAPES[category], size, rng)
    # Mostly brightness jitter: independent channel noise would tint grey and black.
    rgb = np.clip(np.array(COLOURS[colour]) * rng.uniform(0.92, 1.08) + rng.normal(0, 3, 3), 0, 255)
    image = _backdrop(size, rng)
    shadow = ImageChops.offset(mask, size // 40, size // 30).filter(ImageFilter.GaussianBlur(size / 50))
    image.paste((80, 80, 80), mask=shadow.point(lambda v: v * 3 // 10))
    image.paste(tuple(int(c * 0.65) for c in rgb), mask=mask)  # the outline is what the fill leaves
    image.paste(_patterned_fill(rgb, pattern, size, rng), mask=mask.filter(ImageFilter.MinFilter(3)))
    return image


def _silhouette(shape: list, size: int, rng) -> Image.Image:
    """Drawn at twice the size then shrunk, which anti-aliases the edges."""
    big = 2 * size
    scale = rng.uniform(0.78, 0.92) * big
    angle = np.deg2rad(rng.uniform(-8, 8))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = (0.5 + rng.uniform(-0.04, 0.04, 2)) * big
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    for value, points in shape:
        xy = (np.asarray(points) - 0.5) @ rotation.T * scale + centre
        draw.polygon([tuple(p) for p in xy], fill=value)
    return canvas.resize((size, size), Image.Resampling.BOX)


def _backdrop(size: int, rng) -> Image.Image:
    """Light grey to beige, slightly darker towards the bottom, with mild grain."""
    base = rng.uniform(228, 242) + rng.uniform(0, 1) * np.array([3.0, 0.0, -12.0])
    fade = 1.02 - 0.07 * np.linspace(0, 1, size)[:, None, None]
    pixels = base * fade + rng.normal(0, 2.0, (size, size, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _patterned_fill(rgb: np.ndarray, pattern: str, size: int, rng) -> Image.Image:
    # The pattern is a lighter tint of the same colour (a darker one would turn yellow olive and
    # orange brown), so the colour a person would name stays the dominant one.
    shade = rgb + (255 - rgb) * 0.35
    y, x = np.mgrid[0:size, 0:size] / size
    period = rng.uniform(0.07, 0.1)
    if pattern == "striped":
        angle = rng.choice([0, np.pi / 2, np.pi / 4, -np.pi / 4])
        on = (x * np.cos(angle) + y * np.sin(angle)) / period % 1 < 0.4
    elif pattern == "dotted":
        on = (x / period % 1 - 0.5) ** 2 + (y / period % 1 - 0.5) ** 2 < 0.24 ** 2
    elif pattern == "checked":
        on = (x / (1.5 * period) % 1 < 0.5) ^ (y / (1.5 * period) % 1 < 0.5)
    else:
        on = np.zeros_like(x, dtype=bool)
    fill = np.where(on[..., None], shade, rgb) * (1.06 - 0.12 * y[..., None])  # soft top light
    return Image.fromarray(np.clip(fill, 0, 255).astype(np.uint8))
