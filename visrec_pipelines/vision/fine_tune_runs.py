"""Fine-tune the encoder on a catalogue's labels and record it as an MLflow run.

The run holds the validation figures (frozen vs fine-tuned, per label group), the loss history,
the time taken and, when the fine-tuned encoder is kept, its weights and its exported ONNX graph
(the very file ``encoders`` serves from its cache). The caller then re-embeds the catalogue with
``embedding_job.update_embeddings`` into the store of the new encoder id (its own folder).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from .encoders import build_encoder, onnx_graph_path
from .fine_tune import FineTuneResult, fine_tune_encoder
from .head_runs import metric_name

EXPERIMENT = "visrec-fine-tune"


def fine_tune_and_log(image_paths: list[str], items: pd.DataFrame, weights_dir: str | Path, registry,
                      run_tags: dict, cache_dir: str | Path | None = None,
                      **settings) -> tuple[FineTuneResult, object | None, str | None]:
    """(result, the fine-tuned ImageEncoder or None when the frozen one is kept, MLflow run id or
    None when there was nothing to fine-tune on)."""
    result = fine_tune_encoder(image_paths, items, weights_dir, **settings)
    if not result.validation and not result.history:   # no labels: nothing ran, nothing to log
        return result, None, None
    encoder = build_encoder(weights_path=result.weights_path, cache_dir=cache_dir) if result.kept else None
    mlflow = registry.mlflow(EXPERIMENT)
    with mlflow.start_run(run_name=f"fine-tune-{run_tags.get('dataset', 'dataset')}") as run:
        mlflow.set_tags({**run_tags, "git_commit": registry.git_commit(), "kept": str(result.kept),
                         "encoder_id": encoder.encoder_id if encoder else "frozen kept"})
        mlflow.log_params({"items": len(items), "message": result.message[:250],
                           **{k: v for k, v in settings.items() if isinstance(v, (int, float, str))}})
        mlflow.log_metric("seconds", result.seconds)
        for group, scores in result.validation.items():
            mlflow.log_metrics({metric_name(group, "validation", name): value for name, value in scores.items()})
        for entry in result.history:
            mlflow.log_metric("train_loss", entry["loss"], step=entry["epoch"])
        if encoder is not None:
            mlflow.log_artifact(str(result.weights_path), "weights")
            graph = onnx_graph_path(encoder.encoder_id, Path(cache_dir) if cache_dir else None)
            if graph.is_file():
                mlflow.log_artifact(str(graph), "onnx")
        with tempfile.TemporaryDirectory() as scratch:
            table = pd.DataFrame(result.validation).T.rename_axis("group").reset_index()
            (Path(scratch) / "validation.md").write_text(table.to_markdown(index=False, floatfmt=".3f"))
            mlflow.log_artifacts(scratch)
    return result, encoder, run.info.run_id
