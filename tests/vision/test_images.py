"""Every kind of bad image is quarantined with the right reason; odd-but-usable ones are normalised."""

import base64
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from visrec_pipelines.vision.images import (
    REASONS,
    ImageLimits,
    ImageRejected,
    inspect_image,
    load_rgb,
    thumbnail_data_uri,
    validate_images,
)

POSTERS = Path("/work/shared/datasets/movielens-small/posters")
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _encoded(image: Image.Image, fmt: str, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def _noise(mode="RGB", size=(64, 64)) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but carries no pixel data: a classic bomb."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _corrupt_png() -> bytes:
    data = bytearray(_encoded(_noise(), "PNG"))
    data[data.index(b"IDAT") + 100] ^= 0xFF  # bad compressed data, complete file
    return bytes(data)


def _sixteen_bit(values, fmt="PNG", mode="I;16") -> bytes:
    pixels = np.tile(np.repeat(np.asarray(values, np.uint16), 14), (40, 1))  # 14-px stripe per value
    image = Image.fromarray(pixels)
    if mode == "I;16B":
        image = Image.frombytes("I;16B", image.size, pixels.astype(">u2").tobytes())
    elif mode == "I":
        image = image.convert("I")
    return _encoded(image, fmt)


def _exif_rotated_jpeg() -> bytes:
    """Stored 60 wide x 40 high, red on top; orientation 6 means 'display rotated 90 deg clockwise'."""
    image = Image.new("RGB", (60, 40), BLUE)
    image.paste(RED, (0, 0, 60, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encoded(image, "JPEG", quality=95, exif=exif)


def _transparent_palette_png() -> bytes:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (20, 0, 40, 40))  # right half red, left half index 0 (transparent)
    return _encoded(image, "PNG", transparency=0)


def _animated_gif() -> bytes:
    red, green, blue = (Image.new("RGB", (40, 40), c) for c in (RED, (0, 255, 0), BLUE))
    return _encoded(red, "GIF", save_all=True, append_images=[green, blue])


# name -> (file bytes, expected reason). Sizes are tiny except where the reason is about size.
BAD = {
    "empty.jpg": (b"", "zero_byte"),
    "notes.jpg": (b"just some text\n" * 50, "not_an_image"),
    "random.jpg": (np.random.default_rng(1).bytes(5000), "not_an_image"),
    "page.png": (b"<!doctype html><html><body>404 Not Found</body></html>" * 5, "not_an_image"),
    "half.jpg": (_encoded(_noise(), "JPEG")[:1500], "truncated"),
    "half.png": (_encoded(_noise(), "PNG")[:6000], "truncated"),
    "bomb.png": (_png_header_only(10_000, 10_000), "decompression_bomb"),
    "tiny.png": (_encoded(_noise(size=(16, 64)), "PNG"), "too_small"),
    "float.tif": (_encoded(Image.fromarray(np.zeros((40, 40), np.float32)), "TIFF"), "unsupported_mode"),
    "int32.tif": (_encoded(Image.fromarray(np.full((40, 40), 70_000, np.int32)), "TIFF"), "unsupported_mode"),
    "corrupt.png": (_corrupt_png(), "unreadable"),
}

# name -> (file bytes, expected notes, pixel (x, y) -> expected RGB, expected (width, height))
ODD = {
    "plain.jpg": (_encoded(Image.new("RGB", (40, 40), RED), "JPEG"), [], ((5, 5), RED), (40, 40)),
    "grey.png": (_encoded(Image.new("L", (40, 40), 77), "PNG"), ["converted_from_L"], ((5, 5), (77,) * 3), (40, 40)),
    "bilevel.png": (_encoded(Image.new("1", (40, 40), 1), "PNG"), ["converted_from_1"], ((5, 5), WHITE), (40, 40)),
    "grey_alpha.png": (_encoded(Image.new("LA", (40, 40), (0, 0)), "PNG"),
                       ["converted_from_LA", "alpha_flattened"], ((5, 5), WHITE), (40, 40)),
    "palette.gif": (_encoded(Image.new("RGB", (40, 40), BLUE).convert("P"), "GIF"),
                    ["converted_from_P"], ((5, 5), BLUE), (40, 40)),
    "palette_alpha.png": (_transparent_palette_png(), ["converted_from_P", "alpha_flattened"],
                          ((5, 5), WHITE), (40, 40)),
    "half_alpha.png": (_encoded(Image.new("RGBA", (40, 40), (255, 0, 0, 128)), "PNG"),
                       ["converted_from_RGBA", "alpha_flattened"], ((5, 5), (255, 127, 127)), (40, 40)),
    "cmyk.jpg": (_encoded(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG", quality=95),
                 ["converted_from_CMYK"], ((5, 5), RED), (40, 40)),
    "deep.png": (_sixteen_bit([0, 32768, 65535]), ["scaled_16bit"], ((20, 5), (128,) * 3), (42, 40)),
    "deep_be.tif": (_sixteen_bit([0, 32768, 65535], "TIFF", "I;16B"), ["scaled_16bit"], ((20, 5), (128,) * 3),
                    (42, 40)),
    "deep_i.tif": (_sixteen_bit([0, 32768, 65535], "TIFF", "I"), ["scaled_16bit"], ((20, 5), (128,) * 3), (42, 40)),
    "rotated.jpg": (_exif_rotated_jpeg(), ["exif_rotated"], ((35, 30), RED), (40, 60)),
    "animated.gif": (_animated_gif(), ["converted_from_P", "first_of_3_frames"], ((5, 5), RED), (40, 40)),
}


def _close(actual, expected, tolerance=8) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    for name, (data, *_) in {**BAD, **ODD}.items():
        (tmp_path / name).write_bytes(data)
    with open(tmp_path / "huge.jpg", "wb") as sparse:  # over 50 MiB on paper, ~0 bytes on disk
        sparse.truncate(ImageLimits().max_bytes + 1)
    return tmp_path


@pytest.mark.parametrize("name", BAD)
def test_bad_image_is_rejected_with_its_reason(corpus: Path, name: str):
    row = inspect_image(corpus / name)
    assert (row["ok"], row["reason"]) == (False, BAD[name][1]), row["detail"]
    assert row["detail"]
    with pytest.raises(ImageRejected) as rejected:
        load_rgb(corpus / name)
    assert rejected.value.reason == BAD[name][1] and rejected.value.reason in REASONS


@pytest.mark.parametrize("name", ODD)
def test_odd_image_is_normalised(corpus: Path, name: str):
    _, notes, (xy, colour), size = ODD[name]
    image, actual_notes = load_rgb(corpus / name)
    assert (image.mode, image.size) == ("RGB", size)
    assert sorted(actual_notes) == sorted(notes)
    assert _close(image.getpixel(xy), colour), image.getpixel(xy)
    row = inspect_image(corpus / name)
    assert row["ok"] and (row["width"], row["height"]) == size and row["notes"] == ";".join(actual_notes)


def test_sixteen_bit_is_scaled_by_bit_depth_not_clipped(corpus: Path):
    image, _ = load_rgb(corpus / "deep.png")
    assert [image.getpixel((x, 5))[0] for x in (0, 20, 41)] == [0, 128, 255]


def test_exif_rotation_moves_the_pixels(corpus: Path):
    image, _ = load_rgb(corpus / "rotated.jpg")  # red top half -> right half after 90 deg clockwise
    assert _close(image.getpixel((35, 5)), RED) and _close(image.getpixel((5, 55)), BLUE)


def test_missing_and_oversized_files(corpus: Path):
    assert inspect_image(corpus / "nope.jpg")["reason"] == "missing_file"
    assert inspect_image(corpus / "huge.jpg")["reason"] == "file_too_large"
    assert inspect_image(corpus / "plain.jpg", ImageLimits(max_bytes=100))["reason"] == "file_too_large"


@pytest.mark.parametrize("pil_limit, header", [(1000, 100), (6000, 100), (None, 20_000)])
def test_pil_pixel_limit_and_ours_both_apply(monkeypatch, pil_limit, header):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pil_limit)  # error, warning, switched off
    with pytest.raises(ImageRejected) as rejected:
        load_rgb(_png_header_only(header, header))
    assert rejected.value.reason == "decompression_bomb"


def test_sources_bytes_and_streams_and_truncation_flag_left_alone(corpus: Path):
    data = (corpus / "cmyk.jpg").read_bytes()
    assert load_rgb(data)[1] == load_rgb(io.BytesIO(data))[1] == ["converted_from_CMYK"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_validate_images_splits_every_record(corpus: Path):
    names = [*BAD, *ODD, "huge.jpg", "nope.jpg", None, "", float("nan")]
    records = pd.DataFrame({"item_id": range(len(names)), "image_path": names})
    accepted, quarantined = validate_images(records, lambda p: corpus / p, progress=True)
    assert len(accepted) + len(quarantined) == len(records)
    assert set(accepted.image_path) == set(ODD)
    reasons = dict(zip(quarantined.item_id, quarantined.reason))
    assert [reasons[i] for i in range(len(BAD))] == [reason for _, reason in BAD.values()]
    assert quarantined.reason.tolist()[-5:] == ["file_too_large"] + ["missing_file"] * 4
    assert (quarantined.detail.tolist()[-3:]) == ["no image path"] * 3
    assert accepted.sha256.str.len().eq(64).all() and accepted.bytes.gt(0).all()


def test_a_failing_resolver_quarantines_instead_of_crashing():
    def resolve(path):
        raise PermissionError(path)
    accepted, quarantined = validate_images(pd.DataFrame({"item_id": [1], "image_path": ["x"]}), resolve)
    assert accepted.empty and quarantined.reason.tolist() == ["unreadable"]


def test_thumbnail_data_uri(corpus: Path):
    uri = thumbnail_data_uri(corpus / "rotated.jpg", size=30)
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.removeprefix("data:image/jpeg;base64,"))))
    assert uri.startswith("data:image/jpeg;base64,") and thumb.size == (20, 30)


@pytest.mark.shared_data
def test_real_posters_are_accepted():
    if not POSTERS.is_dir():
        message = f"shared posters not found at {POSTERS}"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    names = sorted(p.name for p in POSTERS.glob("*.jpg"))[:25]
    records = pd.DataFrame({"item_id": names, "image_path": names})
    accepted, quarantined = validate_images(records, lambda p: POSTERS / p)
    assert quarantined.empty and len(accepted) == 25
    assert accepted.height.eq(268).all() and accepted.sha256.is_unique
    image, notes = load_rgb(POSTERS / names[0])
    assert image.mode == "RGB" and notes == []


def test_validation_cache_opens_only_new_or_changed_files(tmp_path, monkeypatch):
    from visrec_pipelines.vision import images as images_module
    from visrec_pipelines.vision.images import ImageCheckCache, validate_images

    for name, colour in (("a", "red"), ("b", "blue")):
        Image.new("RGB", (64, 64), colour).save(tmp_path / f"{name}.png")
    records = pd.DataFrame({"item_id": ["a", "b", "c"], "image_path": ["a.png", "b.png", "missing.png"]})
    opened = []
    real = images_module._inspect_record
    monkeypatch.setattr(images_module, "_inspect_record",
                        lambda path, *args: opened.append(path) or real(path, *args))
    store = ImageCheckCache(tmp_path / "checks.json")
    cache = store.load()
    accepted, quarantined = validate_images(records, lambda p: tmp_path / p, cache=cache)
    store.save(cache)
    assert sorted(accepted["item_id"]) == ["a", "b"] and list(quarantined["item_id"]) == ["c"]
    assert sorted(opened) == ["a.png", "b.png", "missing.png"]

    opened.clear()
    Image.new("RGB", (8, 8), "green").save(tmp_path / "b.png")        # changed: now too small
    os.utime(tmp_path / "b.png", ns=(1, 1))
    again, quarantined = validate_images(records, lambda p: tmp_path / p, cache=store.load())
    assert sorted(opened) == ["b.png", "missing.png"]                  # a.png reused, unchanged
    assert list(again["item_id"]) == ["a"]
    assert dict(zip(quarantined["item_id"], quarantined["reason"])) == {"b": "too_small", "c": "missing_file"}


def test_an_image_path_out_of_the_dataset_folder_is_quarantined(tmp_path):
    from visrec_pipelines.data.contract import Dataset

    (tmp_path / "outside.jpg").write_bytes(b"secret")
    (tmp_path / "shop" / "images").mkdir(parents=True)
    (tmp_path / "shop" / "images" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    records = pd.DataFrame({"item_id": ["up", "abs", "link"],
                            "image_path": ["../outside.jpg", "/etc/hostname", "images/link.jpg"]})
    accepted, quarantined = validate_images(records, Dataset(tmp_path / "shop").image_file)
    assert accepted.empty and quarantined["reason"].tolist() == ["outside_folder"] * 3
