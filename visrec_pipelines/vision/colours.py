"""The dominant colours of the object in an image, named in a small readable vocabulary.

1. Shrink to ~64 px (colour shares do not need detail; this keeps a call to ~1-2 ms).
2. Take the backdrop colour as the median of the border ring and drop pixels close to it, plus
   one pixel of edge where object and backdrop blend. A busy border (a poster, a scene) means there is no
   plain backdrop: then the whole picture counts.
3. k-means the object pixels in Oklab; a cluster that is a lighter tint of a darker one with a
   comparable share is its pattern or highlight and reads as the darker colour (a black shirt
   with grey checks is a black shirt).
4. Name each cluster; confidence = the name's share of object pixels.

Oklab rather than CIELAB: the same idea (perceptual lightness, chroma, hue) but its hue does not
drift from blue towards purple, so hue sectors can name colours. Values are scaled by 100
(L 0-100, chroma up to ~32) so the thresholds below read like familiar Lab numbers.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from visrec_pipelines.vision.tags import Tag

COLOUR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
                "grey", "beige")
WORKING_SIDE = 64
BORDER_PX = 2
BACKDROP_DISTANCE = 10.0   # Oklab x100; the demo's drop shadow is ~12 from its backdrop at the darkest
PLAIN_BORDER_SHARE = 0.7   # this much of the border near its median colour -> a plain backdrop
N_CLUSTERS = 5
MAX_PIXELS = 1500
TINT_RANGE = (0.05, 0.6)   # lighter = darker + t * (white - darker); t above ~0.6 is a different colour
TINT_RESIDUAL = 0.15       # allowed deviation from that line, relative to the colour difference

# sRGB -> linear light, tabulated for uint8 input.
_LINEAR = np.where((v := np.arange(256) / 255) > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
_LMS = np.array([[0.4122214708, 0.5363325363, 0.0514459929], [0.2119034982, 0.6806995451, 0.1073969566],
                 [0.0883024619, 0.2817188376, 0.6299787005]])
_OKLAB = np.array([[0.2104542553, 0.7936177850, -0.0040720468], [1.9779984951, -2.4285922050, 0.4505937099],
                   [0.0259040371, 0.7827717662, -0.8086757660]]) * 100


def srgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) -> Oklab x100 (..., 3)."""
    return np.cbrt(_LINEAR[np.asarray(rgb, dtype=np.uint8)] @ _LMS.T) @ _OKLAB.T


def colour_name(lab: np.ndarray) -> str:
    """A readable name for one Oklab x100 colour (L, a, b)."""
    lightness, chroma = float(lab[0]), float(np.hypot(lab[1], lab[2]))
    hue = float(np.degrees(np.arctan2(lab[2], lab[1])) % 360)
    warm = 20 <= hue < 110
    if chroma < (3.0 if warm else 4.5):  # cool greys (slate, charcoal) carry a little blue
        return "black" if lightness < 35 else "white" if lightness > 88 else "grey"
    if warm and lightness < 50 and chroma < 13:
        return "brown"
    if warm and chroma < 10:  # muted warm colours: tan and camel are brown, khaki and sand beige
        return "brown" if lightness < 75 and hue < 90 else "beige"
    if hue >= 338 or hue < 10:
        return "pink" if lightness >= 45 else "red"
    if hue < 38:
        return "pink" if lightness > 80 and chroma < 10 else "red"
    if hue < 80:
        return "orange"
    if hue < 112:
        return "yellow" if lightness >= 60 else "green"  # dark yellow is olive
    if hue < 190:
        return "green"
    return "blue" if hue < 285 else "purple"


def colour_shares(image: Image.Image, exclude_backdrop: bool = True) -> list[tuple[str, float]]:
    """[(colour name, share of object pixels)], largest first. exclude_backdrop=False describes the
    whole picture, which suits posters and scenes (a dark poster is a dark poster)."""
    rgb = _working_pixels(image)
    lab = srgb_to_oklab(rgb)
    mask = _object_mask(lab) if exclude_backdrop else np.ones(lab.shape[:2], dtype=bool)
    pixels_rgb, pixels_lab = rgb[mask], lab[mask]
    if len(pixels_lab) > MAX_PIXELS:  # a fixed stride keeps the result deterministic
        step = len(pixels_lab) / MAX_PIXELS
        keep = (np.arange(MAX_PIXELS) * step).astype(int)
        pixels_rgb, pixels_lab = pixels_rgb[keep], pixels_lab[keep]
    centres, labels = _kmeans(pixels_lab, min(N_CLUSTERS, len(pixels_lab)))
    counts = np.bincount(labels, minlength=len(centres)).astype(float)
    mean_rgb = np.stack([pixels_rgb[labels == c].mean(axis=0) for c in range(len(centres))])
    shares: dict[str, float] = {}
    for cluster, root in enumerate(_tint_roots(mean_rgb, centres[:, 0], counts)):
        name = colour_name(centres[root])
        shares[name] = shares.get(name, 0.0) + float(counts[cluster] / counts.sum())
    return sorted(shares.items(), key=lambda item: -item[1])


def colour_tags(image: Image.Image, min_share: float = 0.05, exclude_backdrop: bool = True) -> list[Tag]:
    """Colour tags of the object; confidence = the colour's share of object pixels."""
    return [Tag(name, share, "colour", "colour")
            for name, share in colour_shares(image, exclude_backdrop) if share >= min_share]


# --- pixels and backdrop ----------------------------------------------------------------------

def _working_pixels(image: Image.Image) -> np.ndarray:
    image = image if image.mode == "RGB" else image.convert("RGB")
    scale = WORKING_SIDE / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(image)


def _object_mask(lab: np.ndarray) -> np.ndarray:
    """Pixels that are not backdrop, minus a one-pixel edge; all pixels if there is no backdrop."""
    height, width = lab.shape[:2]
    everything = np.ones((height, width), dtype=bool)
    if min(height, width) <= 4 * BORDER_PX:
        return everything
    ring = everything.copy()
    ring[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX] = False
    border = lab[ring]
    backdrop = np.median(border, axis=0)  # robust to the object touching the border here and there
    if (np.linalg.norm(border - backdrop, axis=1) < BACKDROP_DISTANCE).mean() < PLAIN_BORDER_SHARE:
        return everything  # no plain backdrop (a poster, a scene): the colours of the whole picture
    foreground = np.linalg.norm(lab - backdrop, axis=2) >= BACKDROP_DISTANCE
    for mask in (_erode(foreground), foreground):
        if mask.sum() >= max(20, 0.01 * mask.size):
            return mask
    return everything  # nothing stands out from the backdrop: a plain picture of one colour


def _nearest_distance(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(_squared_distances(points, centres).min(axis=1), 0.0))


def _squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """|p - c|^2 for every pair, as one matrix product (much faster than broadcasting)."""
    return (points ** 2).sum(1)[:, None] - 2 * points @ centres.T + (centres ** 2).sum(1)[None, :]


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    out = mask.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out &= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return out


# --- clustering -------------------------------------------------------------------------------

def _kmeans(points: np.ndarray, k: int, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Plain Lloyd's k-means with a deterministic farthest-point start (no randomness, so the same
    image always gets the same tags). Returns (centres, labels) without empty clusters."""
    centres = [points[np.argmin(points[:, 0])]]  # the darkest pixel, then the farthest ones
    for _ in range(1, k):
        distance = _nearest_distance(points, np.array(centres))
        if distance.max() < 1.0:
            break  # fewer distinct colours than k
        centres.append(points[np.argmax(distance)])
    centres = np.array(centres, dtype=float)
    for _ in range(iterations):
        labels = _squared_distances(points, centres).argmin(axis=1)
        counts = np.bincount(labels, minlength=len(centres))
        sums = np.stack([np.bincount(labels, points[:, j], len(centres)) for j in range(3)], axis=1)
        moved = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        converged = np.abs(moved - centres).max() < 0.05
        centres = moved
        if converged:
            break
    labels = _squared_distances(points, centres).argmin(axis=1)
    used = np.unique(labels)
    return centres[used], np.searchsorted(used, labels)


def _tint_roots(mean_rgb: np.ndarray, lightness: np.ndarray, counts: np.ndarray) -> list[int]:
    """For each cluster, the darker cluster it is a tint of (itself if none): lighter = darker +
    t * (white - darker), as when a pattern is printed in a paler shade of the base colour. The
    base needs at least half the tint's share, so a small dark shadow never swallows the colour."""
    roots = list(range(len(mean_rgb)))
    order = np.argsort(lightness)
    for position, light in enumerate(order):
        for dark in order[:position]:
            if roots[dark] == dark and counts[dark] >= 0.5 * counts[light] and \
                    _is_tint(mean_rgb[dark], mean_rgb[light]):
                roots[light] = dark
                break
    return roots


def _is_tint(dark: np.ndarray, light: np.ndarray) -> bool:
    towards_white, difference = 255.0 - dark, light - dark
    norm = float(towards_white @ towards_white)
    if norm < 1e-6:
        return False
    t = float(difference @ towards_white) / norm
    residual = np.linalg.norm(difference - t * towards_white)
    return TINT_RANGE[0] <= t <= TINT_RANGE[1] and residual <= TINT_RESIDUAL * np.linalg.norm(difference) + 4
