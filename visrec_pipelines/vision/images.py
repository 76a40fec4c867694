"""Open, check and normalise item images: the platform's single decode path.

`load_rgb` is what validation calls and what the embedding code will call later, so an image
that passed validation is decoded exactly the same way when it is embedded.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from visrec_pipelines.atomic import write_atomically
from visrec_pipelines.paths import OutsideFolder

REASONS = ("missing_file", "zero_byte", "file_too_large", "not_an_image", "truncated",
           "decompression_bomb", "too_small", "unsupported_mode", "unreadable", "outside_folder")

# Only web/photo formats are handed to Pillow: fewer parsers exposed to untrusted bytes, and junk
# cannot be "recognised" by a permissive plugin such as TGA.
Image.init()
FORMATS = tuple(f for f in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF") if f in Image.OPEN)
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
SUPPORTED_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK"} | SIXTEEN_BIT_MODES
EXIF_ORIENTATION = 0x0112
EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                  4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                  6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                  8: Image.Transpose.ROTATE_90}
WHITE = (255, 255, 255)

ACCEPTED_COLUMNS = ["item_id", "image_path", "width", "height", "format", "original_mode",
                    "notes", "sha256", "bytes"]
QUARANTINED_COLUMNS = ["item_id", "image_path", "reason", "detail"]


@dataclass(frozen=True)
class ImageLimits:
    min_side: int = 32              # smaller width or height -> too_small
    max_pixels: int = 40_000_000    # width*height above -> decompression_bomb (from the header)
    max_bytes: int = 50 * 2**20     # bigger file -> file_too_large


class ImageRejected(ValueError):
    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class _Decoded:
    image: Image.Image
    notes: list[str]
    format: str
    original_mode: str


def load_rgb(source: Path | str | bytes | BinaryIO,
             limits: ImageLimits = ImageLimits()) -> tuple[Image.Image, list[str]]:
    """Decode fully and normalise to 8-bit RGB; returns (image, notes). Raises ImageRejected."""
    decoded = _decode(_read_bytes(source, limits), limits)
    return decoded.image, decoded.notes


def inspect_image(path: Path, limits: ImageLimits = ImageLimits()) -> dict:
    """One row: ok, reason, detail, width, height, format, original_mode, notes, sha256, bytes."""
    row = dict(ok=False, reason=None, detail=None, width=None, height=None, format=None,
               original_mode=None, notes="", sha256=None, bytes=None)
    try:
        data = _read_bytes(path, limits)
        row.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
        decoded = _decode(data, limits)
    except ImageRejected as rejected:
        return row | dict(reason=rejected.reason, detail=rejected.detail)
    width, height = decoded.image.size
    return row | dict(ok=True, width=width, height=height, format=decoded.format,
                      original_mode=decoded.original_mode, notes=";".join(decoded.notes))


def validate_images(records: pd.DataFrame, resolve: Callable[[str], Path],
                    limits: ImageLimits = ImageLimits(),
                    progress: bool = False, cache: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split records (item_id, image_path) into (accepted, quarantined); every record lands in one.

    ``cache`` ({image_path: [file signature, result]}, updated in place) lets a re-run open only new
    or changed files: a file whose size, mtime and limits are unchanged reuses its last result."""
    accepted, quarantined = [], []
    rows = records[["item_id", "image_path"]].itertuples(index=False)
    for item_id, image_path in tqdm(rows, total=len(records), disable=not progress,
                                    desc="validating images", unit="img"):
        row = _inspect_cached(image_path, resolve, limits, cache)
        base = {"item_id": item_id, "image_path": image_path}
        if row["ok"]:
            accepted.append(base | {k: row[k] for k in ACCEPTED_COLUMNS[2:]})
        else:
            quarantined.append(base | {"reason": row["reason"], "detail": row["detail"]})
    accepted_df = pd.DataFrame(accepted, columns=ACCEPTED_COLUMNS)
    accepted_df = accepted_df.astype({"width": "int64", "height": "int64", "bytes": "int64"})
    return accepted_df, pd.DataFrame(quarantined, columns=QUARANTINED_COLUMNS)


class ImageCheckCache:
    """The ``validate_images`` cache as a JSON file (written atomically)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):   # first run, or a damaged file: check everything again
            return {}

    def save(self, cache: dict, keep: set[str] | None = None) -> None:
        """Write ``cache``, forgetting paths not in ``keep`` (items that left the catalogue)."""
        write_atomically(self.path, json.dumps({p: e for p, e in cache.items() if keep is None or p in keep}))


def thumbnail_data_uri(path: Path, size: int = 96) -> str:
    """'data:image/jpeg;base64,...' of the normalised image (raises ImageRejected if it is bad)."""
    image, _ = load_rgb(path)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- reading ---------------------------------------------------------------------------------

def _inspect_cached(image_path, resolve, limits: ImageLimits, cache: dict | None) -> dict:
    if cache is None or _is_blank(image_path):
        return _inspect_record(image_path, resolve, limits)
    try:
        stat = resolve(image_path).stat()
    except Exception:  # missing or unresolvable: let the full inspection name the reason
        return _inspect_record(image_path, resolve, limits)
    signature = f"{stat.st_size}:{stat.st_mtime_ns}:{limits}"
    hit = cache.get(str(image_path))
    if hit is not None and hit[0] == signature:
        return hit[1]
    row = _inspect_record(image_path, resolve, limits)
    cache[str(image_path)] = [signature, {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}]
    return row


def _inspect_record(image_path, resolve: Callable[[str], Path], limits: ImageLimits) -> dict:
    if _is_blank(image_path):
        return {"ok": False, "reason": "missing_file", "detail": "no image path"}
    try:
        path = resolve(image_path)
    except OutsideFolder as refused:    # ../, an absolute path or a link out of the dataset folder
        return {"ok": False, "reason": "outside_folder", "detail": str(refused)}
    except Exception as exc:  # a resolver bug must not take the whole batch down
        return {"ok": False, "reason": "unreadable", "detail": f"cannot resolve path: {exc!r}"}
    return inspect_image(path, limits)


def _is_blank(value) -> bool:
    if isinstance(value, (str, os.PathLike)):
        return not str(value).strip()
    return value is None or bool(pd.isna(value))


def _read_bytes(source, limits: ImageLimits) -> bytes:
    """The whole file in memory: it is hashed and decoded from the same bytes."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        elif isinstance(source, (str, os.PathLike)):
            data = _read_path(Path(source), limits)
        else:
            data = source.read(limits.max_bytes + 1)  # +1 so an oversized stream is noticed
    except OSError as exc:
        raise ImageRejected("unreadable", f"cannot read file: {exc}") from exc
    if not data:
        raise ImageRejected("zero_byte", "file is empty (0 bytes)")
    _check_size(len(data), limits)
    return data


def _read_path(path: Path, limits: ImageLimits) -> bytes:
    if not path.is_file():
        raise ImageRejected("missing_file", f"no such file: {path}")
    _check_size(path.stat().st_size, limits)  # before reading a huge file into memory
    return path.read_bytes()


def _check_size(n_bytes: int, limits: ImageLimits) -> None:
    if n_bytes > limits.max_bytes:
        raise ImageRejected("file_too_large", f"{n_bytes:,} bytes is over the {limits.max_bytes:,} limit")


# --- decoding --------------------------------------------------------------------------------

def _decode(data: bytes, limits: ImageLimits) -> _Decoded:
    try:
        # PIL warns (and at 2x raises) above its own global MAX_IMAGE_PIXELS; make the warning an
        # error so that limit also holds, while limits.max_pixels below is checked regardless.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        _check_header(image, limits)
        notes = _first_frame_note(image)
        image.load()  # full decode: truncation only shows up here (never set LOAD_TRUNCATED_IMAGES)
        original_mode, image_format = image.mode, image.format
        orientation = _exif_transpose_method(image)
        image = _to_rgb(image, notes)
        if orientation is not None:  # last: _to_rgb reads the original's TIFF tags
            notes.append("exif_rotated")
            image = image.transpose(orientation)
    except ImageRejected:
        raise
    except Exception as exc:  # one bad file must never crash a batch
        raise ImageRejected(*_classify(exc)) from exc
    return _Decoded(image, notes, image_format, original_mode)


def _check_header(image: Image.Image, limits: ImageLimits) -> None:
    """Size and mode come from the header, so these checks cost nothing and precede decoding."""
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageRejected("decompression_bomb",
                            f"{width}x{height} = {width * height:,} pixels is over {limits.max_pixels:,}")
    if min(width, height) < limits.min_side:
        raise ImageRejected("too_small", f"{width}x{height} has a side under {limits.min_side} px")
    if image.mode not in SUPPORTED_MODES:
        raise ImageRejected("unsupported_mode", f"pixel mode {image.mode!r} is not supported")


def _classify(exc: Exception) -> tuple[str, str]:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "decompression_bomb", text
    if isinstance(exc, UnidentifiedImageError):
        return "not_an_image", f"not a recognised image (tried {', '.join(FORMATS)})"
    if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
        return "truncated", text
    return "unreadable", text


def _first_frame_note(image: Image.Image) -> list[str]:
    n_frames = getattr(image, "n_frames", 1)  # stays on frame 0, which is what gets loaded
    return [f"first_of_{n_frames}_frames"] if n_frames > 1 else []


def _exif_transpose_method(image: Image.Image) -> Image.Transpose | None:
    """Same table as ImageOps.exif_transpose; orientation 1 or junk values mean 'leave as is'."""
    return EXIF_TRANSPOSE.get(image.getexif().get(EXIF_ORIENTATION, 1))


# --- normalising -----------------------------------------------------------------------------

def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES:
        notes.append("scaled_16bit")
        image = _scale_16bit(image)  # now 'L'; its own conversion is not worth a second note
    elif image.mode != "RGB":
        notes.append(f"converted_from_{image.mode}")
    if image.mode in ("LA", "PA", "RGBA") or "transparency" in image.info:
        notes.append("alpha_flattened")
        return _flatten_on_white(image.convert("RGBA"))
    return image if image.mode == "RGB" else image.convert("RGB")


def _flatten_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, WHITE)
    background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return background


def _scale_16bit(image: Image.Image) -> Image.Image:
    """Map 0..2**bits-1 onto 0..255 (Pillow's own convert('L') clips everything above 255)."""
    bits = _bit_depth(image)
    top = 2**bits - 1
    values = np.asarray(image).astype(np.int64)
    if values.min() < 0 or values.max() > top:
        raise ImageRejected("unsupported_mode", f"mode {image.mode!r} values exceed {bits}-bit range")
    return Image.fromarray(((values * 255 + top // 2) // top).astype(np.uint8))


def _bit_depth(image: Image.Image) -> int:
    """TIFF declares its sample depth (e.g. 12-bit scans); everything else here is 16-bit."""
    declared = getattr(image, "tag_v2", {}).get(258, (16,))
    declared = declared[0] if isinstance(declared, tuple) else declared
    return declared if 1 <= declared <= 16 else 16
