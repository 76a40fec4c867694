"""Bring a catalogue's embeddings up to date: embed only new or changed images, drop removed items.

The same function runs the whole catalogue in one process or one shard of it (``shard=(i, n)``) in
each of several processes or machines writing into one shared store; ``visrec embed --shard i/n``
is the command-line form. Memory stays bounded: images stream through in batches and the store
buffers at most one chunk.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from .embedding_store import CHUNK_ROWS, EmbeddingStore
from .embedding_stream import Failure, embed_images
from .encoders import ImageEncoder


@dataclass
class EmbeddingReport:
    catalogue: int
    embedded: int = 0
    unchanged: int = 0
    removed: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0


def update_embeddings(store: EmbeddingStore, encoder: ImageEncoder, catalogue: pd.DataFrame,
                      resolve: Callable[[str], str], shard: tuple[int, int] | None = None,
                      batch_size: int = 32, workers: int = 2, progress: bool = False,
                      remove_missing: bool = True, rows_per_chunk: int = CHUNK_ROWS) -> EmbeddingReport:
    """catalogue: item_id, sha256, image_path (resolved to a file by ``resolve``)."""
    started = time.perf_counter()
    plan = store.plan(catalogue[["item_id", "sha256", "image_path"]], shard=shard)
    report = EmbeddingReport(catalogue=len(catalogue), unchanged=plan.unchanged)
    records = ((str(r.item_id), resolve(r.image_path)) for r in plan.to_embed.itertuples())
    with store.writer(rows_per_chunk) as writer:    # published as it goes: a killed run resumes
        for batch in embed_images(records, encoder, batch_size=batch_size, workers=workers,
                                  progress=progress, total=len(plan.to_embed)):
            writer.write(batch)
            report.embedded += len(batch)
            report.failures.extend(batch.failures)
    if remove_missing and plan.to_remove:
        store.remove(plan.to_remove)
        report.removed = len(plan.to_remove)
    report.seconds = time.perf_counter() - started
    return report
