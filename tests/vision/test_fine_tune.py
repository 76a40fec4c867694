"""Fine-tuning the last blocks: a new encoder id, loadable weights, an MLflow run, skipped without labels."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from visrec_pipelines.registry import Registry
from visrec_pipelines.vision.encoders import build_encoder
from visrec_pipelines.vision.fine_tune import fine_tune_encoder
from visrec_pipelines.vision.fine_tune_runs import EXPERIMENT, fine_tune_and_log

COLOURS = {"red": (200, 30, 40), "blue": (30, 60, 200)}


@pytest.fixture(scope="module")
def tiny_shop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shop")
    rows = []
    for k in range(24):
        colour, shape = list(COLOURS)[k % 2], ["round", "square"][(k // 2) % 2]
        image = Image.new("RGB", (48, 48), (245, 245, 245))
        draw = ImageDraw.Draw(image)
        (draw.ellipse if shape == "round" else draw.rectangle)((10, 10, 38, 38), fill=COLOURS[colour])
        image.save(folder / f"{k}.png")
        rows.append({"item_id": f"i{k}", "image_path": str(folder / f"{k}.png"), "colour": colour, "shape": shape})
    return pd.DataFrame(rows)


def test_without_labels_fine_tuning_is_skipped_with_a_reason(tiny_shop, tmp_path):
    result = fine_tune_encoder(tiny_shop["image_path"].tolist(), tiny_shop[["item_id", "image_path"]], tmp_path)
    assert not result.kept and "no label groups" in result.message and result.weights_path is None


def test_fine_tuned_encoder_gets_its_own_id_graph_and_mlflow_run(tiny_shop, tmp_path):
    registry = Registry(f"sqlite:///{tmp_path}/mlflow.db", "tiny", tmp_path)
    result, encoder, run_id = fine_tune_and_log(
        tiny_shop["image_path"].tolist(), tiny_shop, tmp_path / "weights", registry, {"dataset": "tiny"},
        cache_dir=tmp_path / "cache", epochs=1, trainable_blocks=1, min_gain=-1.0)  # -1: keep it anyway
    assert result.kept and result.weights_path.is_file() and len(result.history) == 1
    assert set(result.validation) == {"colour", "shape"}
    assert encoder.encoder_id != build_encoder(runtime="torch").encoder_id and encoder.runtime == "onnxruntime"
    features = encoder.encode(np.zeros((1, 3, 224, 224), np.float32)).features
    assert features.shape == (1, 1280) and abs(np.linalg.norm(features) - 1) < 1e-4
    mlflow = registry.mlflow(EXPERIMENT)
    run = mlflow.get_run(run_id)
    assert run.data.tags["kept"] == "True" and "seconds" in run.data.metrics
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"weights", "onnx", "validation.md"} <= artifacts


def test_a_large_catalogue_fine_tunes_on_a_bounded_sample(tiny_shop, tmp_path, monkeypatch):
    from visrec_pipelines.vision import fine_tune

    seen = []
    trunk = fine_tune._trunk_activations
    monkeypatch.setattr(fine_tune, "_trunk_activations", lambda net, upto, paths, *a, **k:
                        seen.append(list(paths)) or trunk(net, upto, paths, *a, **k))
    result = fine_tune_encoder(tiny_shop["image_path"].tolist(), tiny_shop, tmp_path, epochs=1, trainable_blocks=1,
                               max_items=10)
    assert len(seen) == 1 and len(seen[0]) == 10 and len(set(seen[0])) == 10     # the trunk saw 10 images
    assert len(result.history) == 1                                           # and trained on them
