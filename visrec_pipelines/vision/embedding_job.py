"""Bring a catalogue's embeddings up to date: embed only new or changed images, drop removed items.

The same function runs the whole catalogue in one process or one shard of it (``shard=(i, n)``) in
each of several processes or machines writing into one shared store: the ``image_embeddings`` asset
runs one Dagster step per shard (``shard_plan``; any executor spreads them), ``visrec embed --shard i/n``
is the command-line form, and ``combine_reports`` sums the shards' reports. Memory stays bounded:
images stream through in batches and the store buffers at most one chunk.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

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
    started_at: float = 0.0      # wall clock (time.time()), to combine shards that ran elsewhere
    repairs: list[str] = field(default_factory=list)   # damage the store found and set aside

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0


class Shard(NamedTuple):
    """One of ``count`` disjoint parts of a catalogue (``embedding_store.shard_of``)."""
    index: int
    count: int

    @property
    def key(self) -> str:
        """A name for the shard's step (Dagster mapping keys allow letters, digits and _)."""
        return f"shard_{self.index}_of_{self.count}"

    def as_tuple(self) -> tuple[int, int] | None:
        return None if self.count == 1 else (self.index, self.count)   # one shard: no hashing


def shard_plan(parallel_shards: int) -> list[Shard]:
    if parallel_shards < 1:
        raise ValueError(f"parallel_shards must be at least 1, got {parallel_shards}")
    return [Shard(i, parallel_shards) for i in range(parallel_shards)]


def combine_reports(reports: Sequence[EmbeddingReport]) -> EmbeddingReport:
    """One report for the shards of one catalogue: counts add up, and the time is the span from the
    first shard's start to the last one's end, whether they ran side by side or one after another."""
    if not reports:
        raise ValueError("no shard reports to combine")
    started = min(r.started_at for r in reports)
    return EmbeddingReport(catalogue=reports[0].catalogue, embedded=sum(r.embedded for r in reports),
                           unchanged=sum(r.unchanged for r in reports), removed=sum(r.removed for r in reports),
                           failures=[f for r in reports for f in r.failures], started_at=started,
                           repairs=[x for r in reports for x in r.repairs],
                           seconds=max(r.started_at + r.seconds for r in reports) - started)


def update_embeddings(store: EmbeddingStore, encoder: ImageEncoder, catalogue: pd.DataFrame,
                      resolve: Callable[[str], str], shard: tuple[int, int] | None = None,
                      batch_size: int = 32, workers: int = 2, progress: bool = False,
                      remove_missing: bool = True, rows_per_chunk: int = CHUNK_ROWS) -> EmbeddingReport:
    """catalogue: item_id, sha256, image_path (resolved to a file by ``resolve``)."""
    started, started_at = time.perf_counter(), time.time()
    plan = store.plan(catalogue[["item_id", "sha256", "image_path"]], shard=shard)
    report = EmbeddingReport(catalogue=len(catalogue), unchanged=plan.unchanged, started_at=started_at)
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
