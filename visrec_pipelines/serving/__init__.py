"""Real-time serving: recommendations, similar items, search by image, feedback, and the gallery.

The hot path never queries Milvus: the champion and an exact in-memory copy of the index (with a
precomputed neighbour table) are loaded at start-up and swapped atomically when either changes.
Import ``create_app`` from ``visrec_pipelines.serving.app`` (FastAPI is imported only there).
"""
from .settings import ServingSettings

__all__ = ["ServingSettings"]
