"""The promotion gate: the MLflow model registry (``registry.Registry``) as the way to production.

A challenger becomes ``champion`` only if it beats the champion — re-scored on the
same, current split — on NDCG@20 by ``margin`` (relative) without losing more than
``cold_tolerance`` (absolute) of Cold Recall@20. Either way the decision, a side-by-side table and a
plot are attached to the challenger's model version. Champions are remembered, so a rollback
restores the previous one.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .registry import GATE_METRICS, Registry


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
        return GateDecision(True, ["there is no champion to compare with"], table)
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


def attach_review(registry: Registry, version: str, run_id: str, decision: GateDecision,
                  champion_version: str | None) -> None:
    """The decision, table and plot on the challenger's version and run, for review in the MLflow UI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    client = registry.client()
    name = registry.model_name
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


def run_gate(registry: Registry, version: str, run_id: str, challenger_metrics: dict, split,
             margin: float = 0.0, cold_tolerance: float = 0.01) -> tuple[GateDecision, str | None]:
    """Re-score the champion on ``split``, decide, attach the review, promote if deserved.
    Returns the decision and the champion version it was compared with."""
    champion_version, champion_metrics, problems = champion_to_beat(registry, split)
    decision = decide(challenger_metrics, champion_metrics, margin=margin, cold_tolerance=cold_tolerance)
    if problems:      # said first: why the comparison is not with the alias's version
        decision.reasons[:0] = problems + ([f"compared with v{champion_version} instead"]
                                           if champion_version else ["no earlier champion loads either"])
    attach_review(registry, version, run_id, decision, champion_version)
    if decision.promote:
        registry.set_champion(version)
    return decision, champion_version


def champion_to_beat(registry: Registry, split) -> tuple[str | None, dict | None, list[str]]:
    """(version, metrics on ``split``, problems): the champion, re-scored; if its artifact cannot be
    loaded (a truncated bundle, a lost artifact store), the newest earlier champion that can. A
    broken champion must not block every challenger forever, nor be beaten by default when a
    sound earlier one exists."""
    from .recsys.bundle import BundleRanker
    from .recsys.metrics import evaluate

    champion = registry.current_champion()
    if champion is None:
        return None, None, []
    alias = str(champion.version)
    problems = []
    for candidate in [alias] + [v for v in reversed(registry.history()) if v != alias]:
        try:
            bundle = registry.load_bundle(candidate)
        except Exception as exc:     # unpickling garbage can raise anything
            problems.append(f"champion v{candidate} cannot be loaded ({type(exc).__name__}: {str(exc)[:160]})")
            continue
        return candidate, evaluate(BundleRanker(bundle, split.train), split), problems
    return None, None, problems
