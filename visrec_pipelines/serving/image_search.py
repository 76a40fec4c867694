"""Search by image: an uploaded picture -> the platform's encoder -> a query vector for the index.

``query_vector`` is the one way from a picture to a vector: it goes through the pipeline's own
decode path (``load_rgb``: byte, pixel-count and type limits, normalisation) and the catalogue's
preprocessing, so the vector lives in the same space as the catalogue's, and a bad upload is
refused with the same reasons the image quarantine uses. ``ImageSearch`` loads the server's encoder
in the background (importing torch and opening the ONNX graph takes seconds; the rest of the API
answers meanwhile) and checks that it matches the index before encoding.
"""
from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from ..settings import Settings
from ..vision.images import ImageLimits, ImageRejected, load_rgb
from .problems import public

if TYPE_CHECKING:   # importing the encoders imports torch (seconds): only the loader thread does
    from ..vision.encoders import ImageEncoder

# ImageRejected.reason -> HTTP status: too big -> 413, not a (supported) picture -> 415, a picture
# that cannot be used -> 422.
STATUS_FOR_REASON = {"file_too_large": 413, "decompression_bomb": 413, "not_an_image": 415,
                     "unsupported_mode": 415, "zero_byte": 422, "truncated": 422, "too_small": 422,
                     "unreadable": 422, "missing_file": 422}


def query_vector(image: bytes | BinaryIO, encoder: ImageEncoder, limits: ImageLimits = ImageLimits(),
                 encoder_lock: AbstractContextManager = nullcontext()) -> np.ndarray:
    """The unit vector of one picture; raises ImageRejected (with a reason) for bad input.
    ``encoder_lock`` is held while the encoder runs (decoding happens before, outside it)."""
    picture, _notes = load_rgb(image, limits)
    batch = encoder.preprocessing.to_tensor(picture)[None]
    with encoder_lock:   # one picture runs on the calling thread (encode would spread a batch)
        return encoder.encode_in_lane(batch).features[0]


class ImageSearch:
    def __init__(self, encoder_name: str, weights_path: str | None, limits: ImageLimits,
                 cache_dir: str | None = None):
        self.encoder_name, self.weights_path, self.limits = encoder_name, weights_path, limits
        self.cache_dir = cache_dir
        self.encoder: ImageEncoder | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageSearch:
        return cls(settings.search_encoder, settings.encoder_weights,
                   ImageLimits(max_pixels=settings.max_upload_pixels, max_bytes=settings.max_upload_bytes),
                   str(settings.cache_dir))

    @property
    def enabled(self) -> bool:
        return self.encoder_name.lower() != "none"

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._load, name="visrec-encoder", daemon=True)
            self._thread.start()

    def _load(self) -> None:
        try:   # the process-wide encoder: several apps in one process, and the pipeline, share it
            from ..vision.encoders import shared_encoder

            self.encoder = shared_encoder(self.encoder_name, self.weights_path, cache_dir=self.cache_dir)
        except Exception as exc:
            self.error = public(exc)          # shown by /status and in 503 details: no paths

    def wait(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.encoder is not None

    def status(self) -> dict:
        if not self.enabled:
            return {"state": "disabled"}
        if self.encoder is not None:
            return {"state": "ready", "encoder_id": self.encoder.encoder_id, "dim": self.encoder.dim,
                    "runtime": self.encoder.runtime}
        return {"state": "failed", "error": self.error} if self.error else {"state": "loading"}

    def vector(self, data: bytes, index_dim: int, index_encoder_id: str | None = None, space=None) -> np.ndarray:
        """Unit vector of an uploaded picture; raises ImageRejected, or RuntimeError if unavailable.
        ``space`` (``vision.similarity.SimilaritySpace``): the index holds vectors made from image
        features and what the heads see in them; the picture goes through the same mapping."""
        encoder = self.encoder
        if encoder is None:
            raise RuntimeError("search by image is " + ("disabled (VISREC_SERVING_ENCODER=none)" if not self.enabled
                                                        else f"unavailable: {self.error}" if self.error
                                                        else "still loading its encoder; retry shortly"))
        if space is not None:
            return self._mapped(data, encoder, space, index_dim, index_encoder_id)
        if encoder.dim != index_dim:
            raise RuntimeError(f"encoder {encoder.encoder_id} gives {encoder.dim}-d vectors but the item index "
                               f"holds {index_dim}-d ones: serve with the encoder the index was built with")
        if index_encoder_id and index_encoder_id != encoder.encoder_id:
            raise RuntimeError(f"the item index was embedded with {index_encoder_id}, this server has "
                               f"{encoder.encoder_id}: set VISREC_SERVING_ENCODER / VISREC_ENCODER_WEIGHTS to match")
        # one session run at a time: onnxruntime lanes are sized for the cores
        return query_vector(data, encoder, self.limits, encoder_lock=self._lock)


    def _mapped(self, data: bytes, encoder: ImageEncoder, space, index_dim: int,
                index_encoder_id: str | None) -> np.ndarray:
        from ..vision.product_colour import colour_descriptor

        if index_encoder_id and index_encoder_id != encoder.encoder_id:
            raise RuntimeError(f"the item index was embedded with {index_encoder_id}, this server has "
                               f"{encoder.encoder_id}: set VISREC_SERVING_ENCODER / VISREC_ENCODER_WEIGHTS to match")
        picture, _notes = load_rgb(data, self.limits)
        with self._lock:
            features = encoder.encode_in_lane(encoder.preprocessing.to_tensor(picture)[None]).features
        vector = space.vectors({"image": features, "colour": colour_descriptor(picture)[None]})[0]
        if len(vector) != index_dim:
            raise RuntimeError(f"the similarity space gives {len(vector)}-d vectors but the item index holds "
                               f"{index_dim}-d ones: rebuild the item index")
        return vector


__all__ = ["ImageSearch", "ImageRejected", "STATUS_FOR_REASON", "query_vector"]
