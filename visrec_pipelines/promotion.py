"""The MLflow model registry as the gate to production.

Every trained ranker is logged as a run and registered as a pyfunc (it scores users from the packed
bundle alone). A challenger becomes ``champion`` only if it beats the champion — re-scored on the
same, current split — on NDCG@20 by ``margin`` (relative) without losing more than
``cold_tolerance`` (absolute) of Cold Recall@20. Either way the decision, a side-by-side table and a
plot are attached to the challenger's model version. Champions are remembered, so a rollback
restores the previous one.
"""
from __future__ import annotations

import json
import math
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import tracking

CHAMPION = "champion"
HISTORY_TAG = "champion_history"
GATE_METRICS = ("ndcg@20", "recall@20", "precision@20", "auc", "coverage@20", "cold_recall@20")


def model_name(dataset: str) -> str:
    return f"visrec-ranker-{dataset}"


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    table: pd.DataFrame   # metric, champion, challenger, delta

    def summary(self) -> str:
        verdict = "PROMOTED to champion" if self.promote else "NOT promoted"
        return f"{verdict}: " + "; ".join(self.reasons)


def decide(challenger: dict, champion: dict | None, margin: float = 0.0,
           cold_tolerance: float = 0.01) -> GateDecision:
    rows = [{"metric": m, "champion": (champion or {}).get(m, math.nan), "challenger": challenger.get(m, math.nan)}
            for m in GATE_METRICS]
    table = pd.DataFrame(rows).assign(delta=lambda t: t["challenger"] - t["champion"])
    if champion is None:
        return GateDecision(True, ["there is no champion yet"], table)
    needed = champion["ndcg@20"] * (1 + margin)
    reasons, promote = [], True
    if not challenger["ndcg@20"] > needed:
        promote = False
        reasons.append(f"NDCG@20 {challenger['ndcg@20']:.4f} does not beat the champion's "
                       f"{champion['ndcg@20']:.4f} by the margin {margin:.1%} (needs > {needed:.4f})")
    else:
        reasons.append(f"NDCG@20 {challenger['ndcg@20']:.4f} beats {champion['ndcg@20']:.4f} (+{margin:.1%} margin)")
    cold_c, cold_h = challenger.get("cold_recall@20", math.nan), champion.get("cold_recall@20", math.nan)
    if not (math.isnan(cold_c) or math.isnan(cold_h)):
        if cold_c < cold_h - cold_tolerance:
            promote = False
            reasons.append(f"Cold Recall@20 drops from {cold_h:.4f} to {cold_c:.4f} (tolerance {cold_tolerance})")
        else:
            reasons.append(f"Cold Recall@20 {cold_c:.4f} within {cold_tolerance} of {cold_h:.4f}")
    return GateDecision(promote, reasons, table)


def pyfunc_model():
    import mlflow.pyfunc

    class _RankerPyfunc(mlflow.pyfunc.PythonModel):
        """Input: a DataFrame with ``user_id`` (params: k). Output: user_id, rank, item_id, score."""

        def load_context(self, context):
            self.bundle = pickle.loads(Path(context.artifacts["bundle"]).read_bytes())

        def predict(self, context, model_input, params=None):
            k = int((params or {}).get("k", 20))
            return self.bundle.recommend(model_input["user_id"].astype(str).tolist(), k=k)

    return _RankerPyfunc()


def log_ranker(bundle, ranker_name: str, dataset: str, metrics: dict, params: dict, tags: dict,
               experiment: str = "visrec-rankers", register: bool = True) -> tuple[str, str | None]:
    """One MLflow run for one trained ranker; returns (run_id, registered version or None)."""
    mlflow = tracking.configure(experiment)
    with tempfile.TemporaryDirectory() as scratch, mlflow.start_run(run_name=f"{ranker_name}-{dataset}") as run:
        mlflow.set_tags({**tags, "ranker": ranker_name, "dataset": dataset, "git_commit": tracking.git_commit()})
        mlflow.log_params(params)
        mlflow.log_metrics({_metric_key(k): float(v) for k, v in metrics.items()
                            if isinstance(v, (int, float)) and not math.isnan(v)})
        version = None
        if register:
            path = Path(scratch) / "bundle.pkl"
            path.write_bytes(pickle.dumps(bundle))
            example = pd.DataFrame({"user_id": [str(bundle.user_ids[0])]})
            info = mlflow.pyfunc.log_model(name="model", python_model=pyfunc_model(),
                                           artifacts={"bundle": str(path)}, input_example=example,
                                           registered_model_name=model_name(dataset))
            version = str(info.registered_model_version)
            client = mlflow.MlflowClient()
            client.set_model_version_tag(model_name(dataset), version, "ranker", ranker_name)
            for key, value in metrics.items():
                if key in GATE_METRICS:
                    client.set_model_version_tag(model_name(dataset), version, _metric_key(key), f"{value:.6f}")
    return run.info.run_id, version


def _metric_key(name: str) -> str:
    return name.replace("@", "_at_")


def _client():
    import mlflow

    tracking.configure("visrec-rankers")
    return mlflow.MlflowClient()


def current_champion(dataset: str):
    """The champion's model version, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return _client().get_model_version_by_alias(model_name(dataset), CHAMPION)
    except MlflowException:
        return None


def load_bundle(dataset: str, version: str):
    import mlflow

    tracking.configure("visrec-rankers")
    model = mlflow.pyfunc.load_model(f"models:/{model_name(dataset)}/{version}")
    return model.unwrap_python_model().bundle


def history(dataset: str) -> list[str]:
    client = _client()
    tags = client.get_registered_model(model_name(dataset)).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def set_champion(dataset: str, version: str) -> None:
    client = _client()
    name = model_name(dataset)
    client.set_registered_model_alias(name, CHAMPION, version)
    past = history(dataset)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(past + [str(version)]))


def rollback(dataset: str) -> str:
    """Restore the previous champion; returns its version."""
    client = _client()
    name = model_name(dataset)
    past = history(dataset)
    if len(past) < 2:
        raise RuntimeError(f"{name} has no previous champion to roll back to (history: {past})")
    previous = past[-2]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(past[:-1]))
    client.set_model_version_tag(name, past[-1], "rolled_back", "true")
    return previous


def attach_review(dataset: str, version: str, run_id: str, decision: GateDecision, champion_version: str | None) -> None:
    """The decision, table and plot on the challenger's version and run, for review in the MLflow UI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    client = _client()
    name = model_name(dataset)
    table_md = decision.table.to_markdown(index=False, floatfmt=".4f")
    client.update_model_version(name, version, description=(
        f"**Promotion gate**: {decision.summary()}\n\nChampion at decision time: "
        f"{champion_version or 'none'}\n\n{table_md}"))
    client.set_model_version_tag(name, version, "gate_decision", "promoted" if decision.promote else "rejected")
    client.set_model_version_tag(name, version, "gate_compared_with", champion_version or "none")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        (out / "promotion_decision.md").write_text(f"# {decision.summary()}\n\n{table_md}\n")
        decision.table.to_csv(out / "promotion_table.csv", index=False)
        figure, axis = plt.subplots(figsize=(7, 3.5))
        decision.table.set_index("metric")[["champion", "challenger"]].plot.bar(ax=axis, rot=0)
        axis.set_title(decision.summary()[:80])
        figure.tight_layout()
        figure.savefig(out / "promotion_metrics.png", dpi=100)
        plt.close(figure)
        for path in out.iterdir():
            client.log_artifact(run_id, str(path), artifact_path="promotion")


def run_gate(dataset: str, version: str, run_id: str, challenger_metrics: dict, split,
             margin: float = 0.0, cold_tolerance: float = 0.01) -> tuple[GateDecision, str | None]:
    """Re-score the champion on ``split``, decide, attach the review, promote if deserved.
    Returns the decision and the champion version it was compared with."""
    from .recsys.bundle import BundleRanker
    from .recsys.metrics import evaluate

    champion = current_champion(dataset)
    champion_version = str(champion.version) if champion is not None else None
    champion_metrics = None
    if champion_version is not None:
        bundle = load_bundle(dataset, champion_version)
        champion_metrics = evaluate(BundleRanker(bundle, split.train), split)
    decision = decide(challenger_metrics, champion_metrics, margin=margin, cold_tolerance=cold_tolerance)
    attach_review(dataset, version, run_id, decision, champion_version)
    if decision.promote:
        set_champion(dataset, version)
    return decision, champion_version
