"""What serving reads: the champion ranker's vectors, published whenever the champion changes.

The registry sensor materialises ``champion_vectors`` when the ``champion`` alias moves (a
promotion by the gate, or ``visrec promote --rollback``). Factorised champions (BPR, VBPR, AMR,
...) get their item vectors in a Milvus collection (inner product = score, lengths kept) and
user + item vectors in a snapshot file; others are served by scoring the bundle. Either way
``champion.json`` names the version, and serving swaps when it changes.
"""

import json
import time

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from .. import promotion, settings
from ..atomic import write_atomically
from ..resources import DatasetResource, VectorIndexResource
from .metadata import table_preview

GROUP = "serving"


def publish_path(dataset: str, name: str):
    return settings.warehouse_dir() / dataset / name


@asset(group_name=GROUP, deps=["champion_ranker"],
       description="The MLflow champion's user/item vectors in Milvus and a snapshot for serving.")
def champion_vectors(context: AssetExecutionContext, dataset: DatasetResource,
                     vector_index: VectorIndexResource) -> Output[pd.DataFrame]:
    champion = promotion.current_champion(dataset.name)
    if champion is None:
        raise RuntimeError(f"no champion registered for {promotion.model_name(dataset.name)}: "
                           "run the main job (or the retrain job) first")
    version = str(champion.version)
    bundle = promotion.load_bundle(dataset.name, version)   # fails loudly on a broken artifact
    ranker = bundle.ranker
    user_vectors = ranker.user_vectors()
    item_vectors = ranker.item_vectors() if user_vectors is not None else None
    collection = None
    if item_vectors is not None:
        with vector_index.open(dataset.name, purpose="champion") as index:
            collection = index.build(bundle.item_ids, item_vectors, normalise=False)
        write_atomically(publish_path(dataset.name, "champion_vectors.npz"), lambda f: np.savez(
            f, version=version, user_ids=bundle.user_ids, user_vectors=user_vectors,
            item_ids=bundle.item_ids, item_vectors=item_vectors))
    manifest = {"version": version, "ranker": champion.tags.get("ranker", ranker.name),
                "run_id": champion.run_id, "factorised": item_vectors is not None,
                "collection": collection, "published_at": time.time(), "dagster_run_id": context.run_id}
    write_atomically(publish_path(dataset.name, "champion.json"), json.dumps(manifest, indent=2))
    frame = pd.DataFrame([manifest])
    return Output(frame, metadata={
        "champion_version": version, "ranker": manifest["ranker"], "factorised": manifest["factorised"],
        "users": len(bundle.user_ids), "items": len(bundle.item_ids),
        "dim": int(item_vectors.shape[1]) if item_vectors is not None else 0,
        "collection": collection or "none (served by scoring the bundle)",
        "manifest": MetadataValue.json(manifest), "preview": table_preview(frame)})
