"""Ranker assets: the evaluation split, one asset per ranker, the evaluation table and the gate."""
import math
import time

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    Config,
    MetadataValue,
    Output,
    asset,
)

from .. import promotion
from ..recsys import zoo
from ..recsys.bundle import RankerBundle
from ..recsys.item_content import item_content
from ..recsys.metrics import evaluate
from ..recsys.split import PROTOCOL_NAME, make_split
from ..registry import GATE_METRICS
from ..resources import DatasetsResource, RegistryResource
from .metadata import dataset_metadata, table_preview
from .partitions import DATASETS
from .vision import CRITICAL_PATH, PRIORITY, aligned_features

GROUP = "rankers"
GATE = "promotion_gate"
TRAINED = "trained"
BEYOND_ACCURACY = ("diversity@20", "novelty@20")   # in the evaluation table, not gated on
ENOUGH = "enough_interactions"


class SplitConfig(Config):
    min_positives: int = 5       # users with fewer positives are left out (evaluation.md)
    min_test_users: int = 10     # fewer, and there is nothing to learn or measure: rankers are skipped


@asset(group_name=GROUP, partitions_def=DATASETS,
       check_specs=[AssetCheckSpec(ENOUGH, asset="interaction_split", partitions_def=DATASETS, blocking=True,
                                   description="Rankers need enough users with positives.")],
       op_tags={PRIORITY: CRITICAL_PATH},
       description="Positives, catalogue and per-user chronological 80/20 split "
                   "(../shared/docs/evaluation.md), with a validation slice carved from train.")
def interaction_split(context: AssetExecutionContext, config: SplitConfig, datasets: DatasetsResource,
                      behaviour_events: pd.DataFrame, item_catalogue: pd.DataFrame, image_embeddings: pd.DataFrame):
    dataset = datasets.of(context)
    ids, features = aligned_features(dataset, image_embeddings, item_catalogue["item_id"])
    split = make_split(behaviour_events, ids, min_positives=config.min_positives).with_item_features(features)
    split = split.with_item_content(item_content(item_catalogue, split.train.item_ids))
    test_users = int((split.test.matrix().getnnz(axis=1) > 0).sum())
    yield AssetCheckResult(check_name=ENOUGH, passed=test_users >= config.min_test_users,
                           severity=AssetCheckSeverity.ERROR,
                           metadata={"test_users": test_users, "required": config.min_test_users})
    yield Output(split, metadata={"test_users": test_users, **dataset_metadata(dataset.version()),
                                  "protocol": PROTOCOL_NAME,
                                   "parameters": MetadataValue.json(split.protocol),
                                   "report": MetadataValue.json({k: _plain(v) for k, v in split.report.items()}),
                                   "train_users": int(split.train.n_users), "catalogue_items": int(split.train.n_items),
                                   "item_attributes": int(split.train.item_attributes.shape[1]),
                                   "items_with_date": int(np.isfinite(split.train.item_available).sum())})


def _plain(value):
    return value.item() if hasattr(value, "item") else value


class RankerConfig(Config):
    train: bool = True    # false: left out of this run (e.g. visrec run --set ranker_gru4rec.train=false)
    # seconds for the whole training (grid and refit; recsys.zoo); 0: no limit
    budget_s: float = zoo.RANKER_BUDGET_S


def ranker_asset(name: str):
    @asset(name=f"ranker_{name}", group_name=GROUP, partitions_def=DATASETS,
           check_specs=[AssetCheckSpec(TRAINED, asset=f"ranker_{name}", partitions_def=DATASETS,
                                       description="It trained; a ranker that fails is left out of the "
                                                   "evaluation instead of failing everyone's promotion.")],
           op_tags={PRIORITY: str(zoo.rankers()[name].train_priority)},
           description=f"The {name} ranker trained under the protocol.")
    def _train(context: AssetExecutionContext, config: RankerConfig, interaction_split):
        if not config.train:
            yield Output({"name": name, "left_out": "switched off by run config"},
                         metadata={"left_out": "switched off by run config"})
            yield AssetCheckResult(check_name=TRAINED, passed=True, metadata={"trained": False})
            return
        try:
            trained = zoo.train(name, interaction_split, progress=False, budget_s=config.budget_s or None)
            # scored here, not in ranker_evaluation: the rankers' steps run side by side, so on a
            # large shop their test scoring no longer queues up behind the slowest ranker
            started = time.perf_counter()
            metrics = evaluate(trained.ranker, interaction_split)
            evaluate_seconds = time.perf_counter() - started
        except Exception as failure:      # one ranker's failure (memory, a bug, odd data) is its own
            reason = f"{type(failure).__name__}: {str(failure)[:400]}"
            context.log.error(f"{name} failed and is left out of the evaluation: {reason}")
            yield Output({"name": name, "left_out": f"failed: {reason}"}, metadata={"left_out": f"failed: {reason}"})
            yield AssetCheckResult(check_name=TRAINED, passed=False, severity=AssetCheckSeverity.WARN,
                                   description=f"{name} failed to train or to score: {reason}")
            return
        bundle = RankerBundle.from_training(trained.ranker, interaction_split.train)
        # a learned ranker over candidate sources says which it leaned on (two_stage)
        leaned_on = getattr(trained.ranker, "signal_importance", None)
        yield Output({"name": name, "bundle": bundle, "train_seconds": trained.train_seconds,
                      "params": trained.params, "metrics": metrics},
                     metadata={"train_seconds": round(trained.train_seconds, 2),
                               "evaluate_seconds": round(evaluate_seconds, 2),
                               **{key: float(metrics[key]) for key in (*GATE_METRICS, *BEYOND_ACCURACY)},
                               # a large shop: training stopped by its time budget (recsys.iterative)
                               "stopped_by_budget": bool(getattr(trained.ranker, "stopped_by_budget", False)),
                               "params": MetadataValue.json({k: _plain(v) if not isinstance(v, tuple) else list(v)
                                                             for k, v in trained.params.items()}),
                               **({"leaned_on": MetadataValue.json(leaned_on())} if leaned_on else {})})
        yield AssetCheckResult(check_name=TRAINED, passed=True, metadata={"trained": True})
    return _train


RANKER_ASSETS = [ranker_asset(name) for name in zoo.names()]


@asset(group_name=GROUP, partitions_def=DATASETS, ins={f"ranker_{n}": AssetIn() for n in zoo.names()},
       op_tags={PRIORITY: CRITICAL_PATH},
       description="Every ranker scored by our metric code on the test split (in its own step); each an "
                   "MLflow run and a registered pyfunc version.")
def ranker_evaluation(context: AssetExecutionContext, datasets: DatasetsResource, registry: RegistryResource,
                      interaction_split, image_embeddings: pd.DataFrame, **rankers) -> Output[pd.DataFrame]:
    dataset = datasets.of(context)
    version = dataset.version()
    models = registry.for_dataset(dataset.name)
    rows = []
    left_out = {t["name"]: t["left_out"] for t in rankers.values() if "left_out" in t}
    if len(left_out) == len(rankers):
        raise RuntimeError(f"no ranker trained: {left_out}")
    for trained in (t for t in rankers.values() if "left_out" not in t):
        # scored in the ranker's own step; an output written before that moved is scored here
        metrics = trained.get("metrics") or evaluate(trained["bundle"].ranker, interaction_split)
        tags = {"dataset_version": version["version"], "dagster_run_id": context.run_id,
                "encoder_id": image_embeddings["encoder_id"].iloc[0], "protocol": PROTOCOL_NAME}
        run_id, model_version = models.log_ranker(
            trained["bundle"], trained["name"], {**metrics, "train_seconds": trained["train_seconds"]},
            {k: str(v) for k, v in trained["params"].items()}, tags)
        rows.append({"ranker": trained["name"], **{k: metrics[k] for k in (*GATE_METRICS, *BEYOND_ACCURACY)},
                     "train_s": trained["train_seconds"], "mlflow_run_id": run_id, "model_version": model_version})
    table = pd.DataFrame(rows).sort_values("ndcg@20", ascending=False).reset_index(drop=True)
    shown = table.drop(columns=["mlflow_run_id"]).round(4)
    return Output(table, metadata={**dataset_metadata(version), "protocol": PROTOCOL_NAME,
                                   "test_users": int(interaction_split.test.matrix().getnnz(axis=1).astype(bool).sum()),
                                   "best": table["ranker"].iloc[0], "metrics": table_preview(shown, rows=len(shown)),
                                   "left_out": MetadataValue.json(left_out)})


class GateConfig(Config):
    ndcg_margin: float = 0.0          # relative: the challenger must beat champion NDCG@20 × (1 + margin)
    cold_recall_tolerance: float = 0.01
    # the gain must be significant over users at this level (one-sided paired bootstrap of per-user
    # NDCG@20); None: the mean rule alone
    significance: float | None = promotion.SIGNIFICANCE


@asset(group_name=GROUP, partitions_def=DATASETS,
       check_specs=[AssetCheckSpec(GATE, asset="champion_ranker", partitions_def=DATASETS, blocking=True,
                                   description="The challenger becomes champion only by beating it.")],
       description="The best ranker of this run challenges the MLflow champion; the decision is attached to "
                   "its version.")
def champion_ranker(context: AssetExecutionContext, config: GateConfig, datasets: DatasetsResource,
                    registry: RegistryResource, ranker_evaluation: pd.DataFrame, interaction_split):
    dataset = datasets.of(context)
    best = ranker_evaluation.iloc[0]
    metrics = {m: float(best[m]) for m in GATE_METRICS}
    models = registry.for_dataset(dataset.name)
    decision, compared_with = promotion.run_gate(
        models, str(best["model_version"]), best["mlflow_run_id"], metrics, interaction_split,
        margin=config.ndcg_margin, cold_tolerance=config.cold_recall_tolerance, significance=config.significance)
    champion = models.current_champion()
    segments = {} if decision.segments is None else {
        "significance": config.significance, "segments": table_preview(decision.segments.round(4))}
    table = decision.table.assign(challenger_ranker=best["ranker"])
    yield Output(table, metadata={"challenger": f"{best['ranker']} v{best['model_version']}",
                                  "compared_with": compared_with or "none", "promoted": decision.promote,
                                  "champion_version": str(champion.version) if champion else "none",
                                  "decision": decision.summary(), "table": table_preview(table.round(4)),
                                  **segments})
    yield AssetCheckResult(check_name=GATE, passed=decision.promote, severity=AssetCheckSeverity.ERROR,
                           metadata={"decision": decision.summary(),
                                     "ndcg_delta": float(0 if math.isnan(decision.table["delta"].iloc[0])
                                                         else decision.table["delta"].iloc[0])})
