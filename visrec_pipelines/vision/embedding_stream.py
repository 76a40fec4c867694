"""Embedding a stream of images: decode + preprocess in threads, overlapped with inference.

``embed_images`` runs one lane per core (see ``encoders``): each lane decodes, preprocesses and
encodes its own small tasks, so only a few batches are in flight and memory does not grow with
the catalogue. Bad images become ``Failure`` records with a reason, never exceptions.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from visrec_pipelines.vision.encoders import LANE_TASK, TOP_K, ImageEncoder, Preprocessing
from visrec_pipelines.vision.images import ImageLimits, ImageRejected, load_rgb


class Failure(NamedTuple):
    item_id: str
    reason: str   # one of images.REASONS
    detail: str


@dataclass
class EmbeddingBatch:
    item_ids: list[str]
    sha256: list[str]                 # of the bytes that were decoded and embedded
    features: np.ndarray              # (n, dim) float32, unit norm
    top_classes: np.ndarray | None    # (n, 10) int16 class indices, most probable first
    top_probs: np.ndarray | None      # (n, 10) float32
    failures: list[Failure]

    def __len__(self) -> int:
        return len(self.item_ids)


def embed_images(records: Iterable[tuple[str, str | Path]], encoder: ImageEncoder,
                 batch_size: int = 32, workers: int | None = None, limits: ImageLimits = ImageLimits(),
                 progress: bool = False, total: int | None = None) -> Iterator[EmbeddingBatch]:
    """Yield one EmbeddingBatch per `batch_size` records, in order. `workers` lanes (default:
    one per core) each decode, preprocess and encode tasks of LANE_TASK images; only a few
    batches are in flight, so memory does not grow with the catalogue. Bad images become
    failures, never exceptions."""
    workers = workers or encoder.lanes
    batches = iter(lambda it=iter(records): list(islice(it, batch_size)), [])
    depth = 1 + -(-2 * workers * LANE_TASK // batch_size)  # batches in flight: lanes never starve
    pool = ThreadPoolExecutor(workers, thread_name_prefix="visrec-embed")
    pending = deque()

    def submit_next():
        chunk = next(batches, None)
        if chunk:
            pending.append([pool.submit(_embed_task, chunk[i: i + LANE_TASK], encoder, limits)
                            for i in range(0, len(chunk), LANE_TASK)])

    try:
        with tqdm(total=total, disable=not progress or total == 0, desc="embedding images", unit="img") as bar:
            for _ in range(depth):
                submit_next()
            while pending:
                batch = _merge([task.result() for task in pending.popleft()])
                submit_next()
                yield batch
                bar.update(len(batch) + len(batch.failures))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _embed_task(records, encoder: ImageEncoder, limits: ImageLimits) -> EmbeddingBatch:
    item_ids, hashes, pixels, failures = _prepare(records, encoder.preprocessing, limits)
    if not item_ids:
        return EmbeddingBatch([], [], np.empty((0, encoder.dim), np.float32), None, None, failures)
    output = encoder.encode_in_lane(pixels)
    top_classes = top_probs = None
    if output.class_probs is not None:
        top_classes, top_probs = top_k(output.class_probs, TOP_K)
    return EmbeddingBatch(item_ids, hashes, output.features, top_classes, top_probs, failures)


def _merge(parts: list[EmbeddingBatch]) -> EmbeddingBatch:
    if len(parts) == 1:
        return parts[0]
    done = [p for p in parts if len(p)]

    def joined(name):
        if not done or getattr(done[0], name) is None:
            return None
        return np.concatenate([getattr(p, name) for p in done])

    return EmbeddingBatch([i for p in parts for i in p.item_ids], [h for p in parts for h in p.sha256],
                          np.concatenate([p.features for p in parts]), joined("top_classes"),
                          joined("top_probs"), [f for p in parts for f in p.failures])


_lane = threading.local()


def _prepare(chunk, preprocessing: Preprocessing, limits: ImageLimits):
    # One pixel buffer per lane, reused: fresh arrays per task fragment the heap and make peak
    # memory creep up with the number of tasks.
    buffer, shape = getattr(_lane, "pixels", None), (len(chunk), 3, preprocessing.crop, preprocessing.crop)
    if buffer is None or len(buffer) < len(chunk) or buffer.shape[1:] != shape[1:]:
        buffer = _lane.pixels = np.empty(shape, np.float32)
    pixels = buffer[: len(chunk)]
    item_ids, hashes, failures = [], [], []
    for item_id, path in chunk:
        try:
            image, sha256 = _decode_hashed(path, limits)
            preprocessing.to_tensor(image, out=pixels[len(item_ids)])
        except ImageRejected as rejected:
            failures.append(Failure(item_id, rejected.reason, rejected.detail))
            continue
        except Exception as exc:  # one bad file never stops the batch
            failures.append(Failure(item_id, "unreadable", f"{type(exc).__name__}: {exc}"))
            continue
        item_ids.append(item_id)
        hashes.append(sha256)
    return item_ids, hashes, pixels[: len(item_ids)], failures


def _decode_hashed(path, limits: ImageLimits) -> tuple[Image.Image, str]:
    """Decode through load_rgb from the very bytes that are hashed, so the stored sha256 is the
    content that was embedded even if the file changes meanwhile."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():  # None, NaN, ""
        raise ImageRejected("missing_file", "no image path")
    try:
        if os.stat(path).st_size <= limits.max_bytes:
            data = Path(path).read_bytes()
            return load_rgb(data, limits)[0], hashlib.sha256(data).hexdigest()
    except OSError:
        pass
    load_rgb(path, limits)  # missing, unreadable or too large: raises the precise ImageRejected
    raise ImageRejected("unreadable", f"{path} changed while it was being read")


def top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, probs.shape[1])
    index = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(probs, index, axis=1), axis=1, kind="stable")
    index = np.take_along_axis(index, order, axis=1)
    return index.astype(np.int16), np.take_along_axis(probs, index, axis=1).astype(np.float32)
