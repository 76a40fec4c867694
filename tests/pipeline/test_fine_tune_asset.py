"""The fine_tuned_encoder asset: a kept encoder embeds a small catalogue at once, a large one later."""
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from dagster import DagsterInstance, build_asset_context

from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.defs import vision
from visrec_pipelines.defs.partitions import register_dataset
from visrec_pipelines.resources import default_resources


def test_a_kept_encoder_embeds_only_a_catalogue_within_embed_max_items(settings, monkeypatch):
    ds = generate_demo(settings.assets_dir / "demo", n_items=12, n_users=4, seed=1)
    items = ds.read_items()
    kept = SimpleNamespace(kept=True, message="kept: beats frozen features", weights_path=Path("w.pt"), seconds=1.0,
                           validation={})
    monkeypatch.setattr(vision, "fine_tune_and_log", lambda *a, **k: (kept, SimpleNamespace(encoder_id="tuned"), "r1"))
    embedded = []
    monkeypatch.setattr(vision, "update_embeddings", lambda store, encoder, catalogue, path:
                        embedded.append(len(catalogue)) or SimpleNamespace(embedded=len(catalogue), unchanged=0))
    monkeypatch.setattr(vision.EmbeddingStore, "for_encoder", staticmethod(lambda *a: None))
    resources = default_resources(settings)
    embeddings = pd.DataFrame({"encoder_id": ["frozen"]})

    instance = DagsterInstance.ephemeral()
    register_dataset(instance, "demo")

    def materialise(embed_max_items: int) -> dict:
        with build_asset_context(partition_key="demo", instance=instance, resources={
                k: resources[k] for k in ("datasets", "encoder", "registry")}) as context:
            output = vision.fine_tuned_encoder(context, vision.FineTuneConfig(embed_max_items=embed_max_items),
                                               image_embeddings=embeddings, item_catalogue=items)
        return output.value

    small = materialise(embed_max_items=len(items))
    assert embedded == [len(items)] and small["embedded_now"] == len(items)
    large = materialise(embed_max_items=len(items) - 1)
    assert embedded == [len(items)] and large["embedded_now"] == 0            # nothing embedded this time
    assert "left to image_embeddings" in large["embedding"] and "VISREC_ENCODER_WEIGHTS" in large["embedding"]
