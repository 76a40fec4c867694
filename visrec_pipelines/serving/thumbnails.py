"""Item thumbnails for ``/images/{id}``, with memory bounded whatever the request mix.

- A requested size is rounded up to one of ``BUCKETS``: at most len(BUCKETS) thumbnails per image.
- A JPEG is decoded already shrunk (``Image.draft``: the decoder's 1/2, 1/4, 1/8 scaling, the
  smallest scale still at least the bucket), so a 24-megapixel photo costs a 1.5-megapixel decode
  for a 512 thumbnail; other formats go through the platform's decode path (``load_rgb``), which
  checks bytes and pixels from the header before decoding.
- At most ``max_decodes`` images are decoded at once (a semaphore; a request that waits longer
  than ``wait_s`` gets a 503), so decode memory is at most max_decodes x the pixel limit.
- Thumbnails (and "cannot be decoded" answers) are kept in an LRU within ``budget_bytes``.
``stats()`` shows the counters (``/status``).
"""
from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

from PIL import Image, ImageOps

from ..vision.images import ImageLimits, ImageRejected, load_rgb
from .problems import Unavailable

BUCKETS = (64, 128, 256, 512)
CACHE_BYTES = 32 * 2**20
MAX_DECODES = 2
WAIT_S = 20.0
ENTRY_OVERHEAD = 256          # bytes counted per cache entry besides the JPEG (key, bookkeeping)
QUALITY = 85


def bucket(size: int) -> int:
    """The smallest bucket at least ``size`` (the largest for anything above it)."""
    return next((b for b in BUCKETS if b >= size), BUCKETS[-1])


def decode_shrunk(data: bytes, side: int, limits: ImageLimits) -> Image.Image:
    """8-bit RGB of at least ``side`` px where the picture is that big, decoded as small as the
    format allows; raises ImageRejected like ``load_rgb``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=("JPEG",))
    except Exception:    # not a JPEG (or a broken one): the platform's path says which
        return load_rgb(data, limits)[0]
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageRejected("decompression_bomb", f"{width}x{height} is over {limits.max_pixels:,} pixels")
    try:   # the scale that keeps the longest side at least ``side`` (what thumbnail() needs)
        image.draft("RGB", (-(-side * width // max(width, height)), -(-side * height // max(width, height))))
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:        # truncated or corrupt scan data
        raise ImageRejected("truncated" if "truncated" in str(exc).lower() else "unreadable",
                            f"{type(exc).__name__}: {exc}") from exc


class Thumbnails:
    def __init__(self, budget_bytes: int = CACHE_BYTES, max_decodes: int = MAX_DECODES,
                 limits: ImageLimits = ImageLimits(), wait_s: float = WAIT_S):
        self.budget_bytes, self.max_decodes, self.limits, self.wait_s = budget_bytes, max_decodes, limits, wait_s
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._decoding = threading.BoundedSemaphore(max_decodes)
        self.cache_bytes = self.decodes = self.hits = self.active = self.peak_decodes = 0
        self.peak_decoded_pixels = 0

    def get(self, path: Path, size: int) -> bytes | None:
        """The JPEG thumbnail of the picture at ``path`` (None: it cannot be read or decoded)."""
        side = bucket(size)
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_mtime_ns, stat.st_size, side)   # a changed file is a new key
        found = self._lookup(key)
        if found is None:
            if not self._decoding.acquire(timeout=self.wait_s):
                raise Unavailable("too many thumbnails are being made right now; retry shortly")
            try:
                found = self._lookup(key)         # made meanwhile by a request for the same one
                if found is None:
                    found = self._render(path, side)
                    self._store(key, found)
            finally:
                self._decoding.release()
        return found or None                      # b"": cannot be decoded

    def _render(self, path: Path, side: int) -> bytes:
        with self._lock:
            self.decodes += 1
            self.active += 1
            self.peak_decodes = max(self.peak_decodes, self.active)
        try:
            if path.stat().st_size > self.limits.max_bytes:
                return b""
            picture = decode_shrunk(path.read_bytes(), side, self.limits)
            with self._lock:
                self.peak_decoded_pixels = max(self.peak_decoded_pixels, picture.width * picture.height)
            picture.thumbnail((side, side))
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=QUALITY)
            return buffer.getvalue()
        except (ImageRejected, OSError):
            return b""
        finally:
            with self._lock:
                self.active -= 1

    def _lookup(self, key: tuple) -> bytes | None:
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                self.hits += 1
            return found

    def _store(self, key: tuple, data: bytes) -> None:
        cost = len(data) + ENTRY_OVERHEAD
        if cost > self.budget_bytes:
            return
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = data
            self.cache_bytes += cost
            while self.cache_bytes > self.budget_bytes:
                _, evicted = self._cache.popitem(last=False)
                self.cache_bytes -= len(evicted) + ENTRY_OVERHEAD

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self.cache_bytes = self.decodes = self.hits = self.peak_decodes = self.peak_decoded_pixels = 0

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._cache), "cache_bytes": self.cache_bytes, "budget_bytes": self.budget_bytes,
                    "decodes": self.decodes, "hits": self.hits, "peak_decodes": self.peak_decodes,
                    "max_decodes": self.max_decodes, "peak_decoded_pixels": self.peak_decoded_pixels,
                    "buckets": list(BUCKETS)}
