"""The promotion gate: the MLflow model registry (``registry.Registry``) as the way to production.

A challenger becomes ``champion`` only if it beats the champion — re-scored on the
same, current split — on NDCG@20 by ``margin`` (relative), the gain is SIGNIFICANT over users (a
paired bootstrap of per-user NDCG@20, one-sided, at level ``significance``: NDCG@20 moves by about
±0.002 between seeds of one model, so a small mean gain on few users is noise), and it does not
lose more than ``cold_tolerance`` (absolute) of Cold Recall@20. Either way the decision, a
side-by-side table, the confidence interval of the gain and the per-segment deltas (users with cold
test items, light and heavy users) and a plot are attached to the challenger's model version.
Champions are remembered, so a rollback restores the previous one.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .recsys.significance import segment_tests
from .registry import GATE_METRICS, Registry

SIGNIFICANCE = 0.05


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    table: pd.DataFrame   # metric, champion, challenger, delta
    # paired tests per segment: segment, metric, users, champion, challenger, delta, low, high, p_value
    segments: pd.DataFrame | None = None
    significance: float | None = None

    def summary(self) -> str:
        verdict = "PROMOTED to champion" if self.promote else "NOT promoted"
        return f"{verdict}: " + "; ".join(self.reasons)


def decide(challenger: dict, champion: dict | None, margin: float = 0.0, cold_tolerance: float = 0.01,
           significance: float | None = SIGNIFICANCE) -> GateDecision:
    """``challenger`` / ``champion``: metrics of ``metrics.evaluate`` on one split; with
    ``per_user`` frames in both (``evaluate(..., per_user=True)``) the gain must also be
    significant at ``significance`` (None: the mean rule alone, as without per-user scores)."""
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
    segments = None
    if significance is not None and "per_user" in challenger and "per_user" in champion:
        tests = segment_tests(challenger["per_user"], champion["per_user"], significance)
        segments = pd.DataFrame([t.row() for t in tests])
        overall = tests[0]
        interval = f"{1 - 2 * significance:.0%} CI {overall.low:+.4f} … {overall.high:+.4f}"
        if overall.p_value >= significance:
            promote = False
            reasons.append(f"the gain {overall.delta:+.4f} ({interval}) is not significant over "
                           f"{overall.users} users: p = {overall.p_value:.3f} >= {significance}")
        else:
            reasons.append(f"the gain {overall.delta:+.4f} ({interval}) is significant over {overall.users} "
                           f"users: p = {overall.p_value:.3f} < {significance}")
    elif significance is not None:
        reasons.append("no per-user scores: significance not tested")
    cold_c, cold_h = challenger.get("cold_recall@20", math.nan), champion.get("cold_recall@20", math.nan)
    if not (math.isnan(cold_c) or math.isnan(cold_h)):
        if cold_c < cold_h - cold_tolerance:
            promote = False
            reasons.append(f"Cold Recall@20 drops from {cold_h:.4f} to {cold_c:.4f} (tolerance {cold_tolerance})")
        else:
            reasons.append(f"Cold Recall@20 {cold_c:.4f} within {cold_tolerance} of {cold_h:.4f}")
    return GateDecision(promote, reasons, table, segments, significance)


def attach_review(registry: Registry, version: str, run_id: str, decision: GateDecision,
                  champion_version: str | None) -> None:
    """The decision, the tables (metrics side by side; the gain's confidence interval and p-value
    per segment) and a plot on the challenger's version and run, for review in the MLflow UI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    client = registry.client()
    name = registry.model_name
    table_md = decision.table.to_markdown(index=False, floatfmt=".4f")
    segments_md = ""
    if decision.segments is not None:
        level = 1 - 2 * decision.significance
        segments_md = (f"\n\n**Paired bootstrap over users** (gain = challenger − champion; low/high: its "
                       f"{level:.0%} interval; one-sided test at {decision.significance}):\n\n"
                       + decision.segments.to_markdown(index=False, floatfmt=".4f"))
    client.update_model_version(name, version, description=(
        f"**Promotion gate**: {decision.summary()}\n\nChampion at decision time: "
        f"{champion_version or 'none'}\n\n{table_md}{segments_md}"))
    client.set_model_version_tag(name, version, "gate_decision", "promoted" if decision.promote else "rejected")
    client.set_model_version_tag(name, version, "gate_compared_with", champion_version or "none")
    if decision.segments is not None:
        overall = decision.segments.iloc[0]
        client.set_model_version_tag(name, version, "gate_ndcg_gain_ci",
                                     f"{overall['delta']:+.4f} [{overall['low']:+.4f}, {overall['high']:+.4f}]")
        client.set_model_version_tag(name, version, "gate_p_value", f"{overall['p_value']:.4f}")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        (out / "promotion_decision.md").write_text(f"# {decision.summary()}\n\n{table_md}{segments_md}\n")
        decision.table.to_csv(out / "promotion_table.csv", index=False)
        if decision.segments is not None:
            decision.segments.to_csv(out / "promotion_segments.csv", index=False)
        _plot(decision, plt).savefig(out / "promotion_metrics.png", dpi=100)
        plt.close("all")
        for path in out.iterdir():
            client.log_artifact(run_id, str(path), artifact_path="promotion")


def _plot(decision: GateDecision, plt):
    """Metrics side by side; with per-user tests, each segment's gain and its interval beside them."""
    panels = 2 if decision.segments is not None else 1
    figure, axes = plt.subplots(1, panels, figsize=(7 * panels, 3.8), squeeze=False)
    decision.table.set_index("metric")[["champion", "challenger"]].plot.bar(ax=axes[0, 0], rot=0)
    axes[0, 0].set_title(decision.summary()[:80])
    if decision.segments is not None:
        seg = decision.segments
        axis = axes[0, 1]
        errors = [seg["delta"] - seg["low"], seg["high"] - seg["delta"]]
        axis.barh(seg["segment"] + " (" + seg["metric"] + ")", seg["delta"], xerr=errors, capsize=4)
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set_title(f"gain, {1 - 2 * decision.significance:.0%} interval")
        axis.invert_yaxis()
    figure.tight_layout()
    return figure


def run_gate(registry: Registry, version: str, run_id: str, challenger_metrics: dict, split,
             margin: float = 0.0, cold_tolerance: float = 0.01,
             significance: float | None = SIGNIFICANCE) -> tuple[GateDecision, str | None]:
    """Re-score the champion on ``split``, decide, attach the review, promote if deserved.
    Returns the decision and the champion version it was compared with.

    ``significance``: the level of the paired test over users (None: the mean rule alone). The
    per-user scores come from ``challenger_metrics["per_user"]`` when the caller evaluated with
    ``per_user=True``, else the challenger's registered bundle is re-scored on ``split``."""
    champion_version, champion_metrics, problems = champion_to_beat(registry, split)
    challenger_metrics = dict(challenger_metrics)
    if significance is not None and champion_metrics is not None and "per_user" not in challenger_metrics:
        challenger_metrics["per_user"] = _per_user(registry, version, split)
    decision = decide(challenger_metrics, champion_metrics, margin=margin, cold_tolerance=cold_tolerance,
                      significance=significance)
    if problems:      # said first: why the comparison is not with the alias's version
        decision.reasons[:0] = problems + ([f"compared with v{champion_version} instead"]
                                           if champion_version else ["no earlier champion loads either"])
    attach_review(registry, version, run_id, decision, champion_version)
    if decision.promote:
        registry.set_champion(version)
    return decision, champion_version


def _per_user(registry: Registry, version: str, split) -> pd.DataFrame:
    from .recsys.bundle import BundleRanker
    from .recsys.metrics import evaluate

    return evaluate(BundleRanker(registry.load_bundle(version), split.train), split, with_auc=False,
                    per_user=True)["per_user"]


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
        return candidate, evaluate(BundleRanker(bundle, split.train), split, per_user=True), problems
    return None, None, problems
