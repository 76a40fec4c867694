"""Every visrec ranker of the zoo against Cornac's peers, per dataset, in one run: one split per
dataset, every model scored by our metric code (../shared/docs/evaluation.md).

    flock /tmp/visrec-bench.lock python -m benchmarks.rankers                      # from the repo root
    python -m benchmarks.rankers --dataset movielens-small --dataset my-shop --all

Datasets: ``movielens-small`` (../shared/datasets, posters as images), ``demo`` (the built-in demo
shop, generated once with its default seed), ``demo-purchases`` (the same shop, purchases only: a
sparse shop), ``movielens-sparse`` (half the users, 40% of the films: a sparse slice) and any
dataset imported under ``assets/NAME`` (read through ``data.contract.Dataset``, validated and split
as the pipeline does: ``recsys.offline.folder_split``).

Ours are trained exactly as the pipeline trains them (``zoo.train``: grids and early stopping on the
VALIDATION slice, then refit on all of train; ``train_s`` is all of that). Cornac's peers get the
same treatment where they have a knob (EASE's λ, ItemKNN's k: the grid is searched on the
validation slice) and Cornac's settings otherwise; their ``train_s`` includes their search too. The
strongest peer is the best of Cornac's and visual kNN. Image features: EfficientNet-Lite0, cached
in ~/.cache/visrec/bench/. The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from visrec_pipelines.recsys import zoo
from visrec_pipelines.recsys.base import Ranker, TrainData
from visrec_pipelines.recsys.item_content import item_content
from visrec_pipelines.recsys.iterative import validation_metric
from visrec_pipelines.recsys.metrics import evaluate
from visrec_pipelines.recsys.split import Split, make_split

REPO = Path(__file__).resolve().parents[1]
MOVIELENS = Path(os.environ.get("VISREC_MOVIELENS", REPO.parent / "shared" / "datasets" / "movielens-small"))
CACHE = Path(os.environ.get("VISREC_BENCH_CACHE", Path.home() / ".cache" / "visrec" / "bench"))
SEED = 0
DEFAULT_DATASETS = ("movielens-small", "demo")
COLUMNS = ("ndcg@20", "recall@20", "cold_recall@20", "diversity@20", "novelty@20", "coverage@20", "auc")
VISUAL_PEER = "visual_knn"     # ours, but a baseline: it counts as a peer
TARGETS = {"movielens-small": {"ndcg_ratio": 1.10, "cold_recall@20": 0.03, "zoo_train_s": 300.0},
           "demo": {"ndcg_ratio": 1.10}}


# --- data -----------------------------------------------------------------------------------------

def movielens_events(root: Path) -> pd.DataFrame:
    """ratings.csv as validated behaviour events (MovieLens has no malformed rows to quarantine)."""
    ratings = pd.read_csv(root / "ratings.csv", dtype=str)
    ratings.columns = [{"movieId": "item_id", "userId": "user_id"}.get(c, c) for c in ratings.columns]
    seconds = ratings["timestamp"].astype(np.int64)
    return pd.DataFrame({"user_id": ratings["user_id"], "item_id": ratings["item_id"],
                         "event_type": "rating", "value": ratings["rating"].astype(float),
                         "timestamp": pd.to_datetime(seconds, unit="s", utc=True)})


def poster_features(root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(item_ids, L2-normalised Lite0 features, encoder id) of every poster that embeds; cached."""
    from visrec_pipelines.vision.embedding_stream import embed_images
    from visrec_pipelines.vision.encoders import build_encoder

    encoder = build_encoder()
    path = CACHE / f"{root.name}_{encoder.encoder_id.replace(':', '-')}.npz"
    if path.is_file():
        cached = np.load(path)
        return cached["item_ids"], cached["features"], encoder.encoder_id
    posters = sorted((root / "posters").glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
    ids, features = [], []
    for batch in embed_images(((p.stem, p) for p in posters), encoder, progress=sys.stderr.isatty(),
                              total=len(posters)):
        ids += batch.item_ids
        features.append(batch.features)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, item_ids=np.asarray(ids), features=np.concatenate(features))
    return np.asarray(ids), np.concatenate(features), encoder.encoder_id


def movielens_split(root: Path, users: float = 1.0, items: float = 1.0) -> tuple[Split, str]:
    """The MovieLens split; ``users`` / ``items`` < 1 keep that random share (seeded): a sparser slice."""
    item_ids, features, encoder_id = poster_features(root)
    movies = pd.read_csv(root / "movies.csv", dtype=str)
    movies.columns = ["item_id", *movies.columns[1:]]
    catalogue = movies["item_id"][movies["item_id"].isin(set(item_ids))].to_numpy()  # films with a poster
    events = movielens_events(root)
    rng = np.random.default_rng(SEED)
    catalogue = catalogue[rng.random(len(catalogue)) < items]
    people = events["user_id"].unique()
    events = events[events["user_id"].isin(set(people[rng.random(len(people)) < users]))]
    row = {item: n for n, item in enumerate(item_ids)}
    split = make_split(events, catalogue, item_features=features[[row[i] for i in catalogue]])
    return split.with_item_content(item_content(movies, split.train.item_ids)), encoder_id


def load_split(name: str) -> tuple[Split, str]:
    from visrec_pipelines.data.contract import Dataset
    from visrec_pipelines.recsys.offline import folder_split

    if name == "movielens-small":
        return movielens_split(MOVIELENS)
    if name == "movielens-sparse":
        return movielens_split(MOVIELENS, users=0.5, items=0.4)
    if name in ("demo", "demo-purchases"):
        from visrec_pipelines.data.demo import generate_demo

        root = CACHE / "demo-shop"
        shop = Dataset(root) if Dataset(root).exists() else generate_demo(root)
        options = {"implicit_positive_types": ("purchase",), "min_positives": 3} if name != "demo" else {}
        return folder_split(shop, CACHE / "features", **options)
    folder = REPO / "assets" / name
    if not Dataset(folder).exists():
        raise SystemExit(f"no dataset {name!r}: expected items.csv and events.csv in {folder}")
    return folder_split(Dataset(folder), CACHE / "features")


# --- Cornac peers ---------------------------------------------------------------------------------

class CornacRanker(Ranker):
    """A Cornac model behind our contract: Cornac's indices are ours (its id maps are seeded with
    every user and every catalogue item in our order), so cold items exist for it too and VBPR
    scores them through the image modality."""

    def __init__(self, model, name: str, images: bool = False):
        super().__init__(SEED)
        self.model, self.name, self.images = model, name, images

    def fit(self, data: TrainData, validation: TrainData | None = None) -> CornacRanker:
        from cornac.data import Dataset, ImageModality

        self.seen = data.matrix()
        uid_map = OrderedDict((u, n) for n, u in enumerate(data.user_ids))
        iid_map = OrderedDict((i, n) for n, i in enumerate(data.item_ids))
        triples = list(zip(data.user_ids[data.users], data.item_ids[data.items], np.ones(len(data.users))))
        dataset = Dataset.build(triples, global_uid_map=uid_map, global_iid_map=iid_map, seed=SEED)
        if self.images:
            modality = ImageModality(features=data.item_features, ids=list(data.item_ids), normalized=True)
            modality.build(id_map=dataset.iid_map)
            dataset.add_modalities(item_image=modality)
        with contextlib.redirect_stdout(io.StringIO()):               # "Optimization finished!"
            self.model.fit(dataset)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        scores = np.stack([np.asarray(self.model.score(int(u)), dtype=np.float64).ravel()
                           for u in np.atleast_1d(users)])
        return np.nan_to_num(scores, nan=-np.inf)


def cornac_peers() -> dict:
    """name → (factory(**setting), grid searched on the validation slice)."""
    from cornac.models import BPR, EASE, VBPR, ItemKNN, MostPop

    return {
        "cornac_mostpop": (lambda: MostPop(), [{}]),
        "cornac_itemknn": (lambda k: ItemKNN(k=k, similarity="cosine", verbose=False), [{"k": 50}, {"k": 200}]),
        "cornac_ease": (lambda lamb: EASE(lamb=lamb, verbose=False, seed=SEED),
                        [{"lamb": 50.0}, {"lamb": 200.0}, {"lamb": 800.0}]),
        "cornac_bpr": (lambda: BPR(k=64, max_iter=200, learning_rate=0.05, lambda_reg=0.01, seed=SEED,
                                   verbose=False), [{}]),
        "cornac_vbpr": (lambda: VBPR(k=32, k2=32, n_epochs=20, learning_rate=0.005, seed=SEED, use_gpu=False,
                                     verbose=False), [{}]),
    }


def run_peer(name: str, factory, grid: list[dict], split: Split) -> tuple[Ranker, dict, float]:
    """(the peer refit on train with the setting best on the validation slice, that setting, seconds)."""
    images = name == "cornac_vbpr"
    started = time.perf_counter()
    best = grid[0]
    if len(grid) > 1:
        tune = split.tune_data()
        scores = [validation_metric(CornacRanker(factory(**g), name, images).fit(tune), tune, split.validation)
                  for g in grid]
        best = grid[int(np.argmax(scores))]
    model = CornacRanker(factory(**best), name, images).fit(split.train)
    return model, best, time.perf_counter() - started


# --- running --------------------------------------------------------------------------------------

def row_of(model: Ranker, split: Split, seconds: float, users: dict, name: str) -> dict:
    """The metric row; the per-user scores go to ``users[name]`` (for the gate's paired test)."""
    metrics = evaluate(model, split, per_user=True)
    users[name] = metrics
    return {**{c: float(metrics[c]) for c in COLUMNS}, "train_s": round(seconds, 2)}


def gate_of(best: str, users: dict, against: str) -> dict:
    """The promotion gate's decision (significance level and all) for ``best`` challenging ``against``."""
    from visrec_pipelines.promotion import decide

    decision = decide(users[best], users[against])
    overall = decision.segments.iloc[0]
    print(f"gate {best} vs {against}: {decision.summary()}")
    print(decision.segments.round(4).to_string(index=False))
    return {"against": against, "promote": bool(decision.promote), "ndcg_gain": clean(overall["delta"]),
            "ci": [clean(overall["low"]), clean(overall["high"])], "p_value": clean(overall["p_value"]),
            "segments": {row["segment"]: {"metric": row["metric"], "delta": clean(row["delta"]),
                                          "ci": [clean(row["low"]), clean(row["high"])]}
                         for _, row in decision.segments.iterrows()}}


def run_dataset(name: str, names: list[str], wanted) -> dict:
    split, encoder_id = load_split(name)
    print(f"\n=== {name}\nprotocol {split.protocol}\nsplit {split.report}\nimage features {encoder_id}", flush=True)
    results, params, importance, users = {}, {}, {}, {}
    for ranker in names:
        if not wanted(ranker):
            continue
        cls = zoo.rankers()[ranker]
        if cls.missing_inputs(split.train):
            print(f"{ranker}: skipped ({'; '.join(cls.missing_inputs(split.train))})", flush=True)
            continue
        trained = zoo.train(ranker, split, seed=SEED)
        results[ranker] = row_of(trained.ranker, split, trained.train_seconds, users, ranker)
        params[ranker] = trained.params
        if hasattr(trained.ranker, "signal_importance"):
            importance[ranker] = trained.ranker.signal_importance()
        print(f"{ranker}: {results[ranker]} {params[ranker]}", flush=True)
    for peer, (factory, grid) in cornac_peers().items():
        if wanted(peer) and (peer != "cornac_vbpr" or split.train.item_features is not None):
            model, setting, seconds = run_peer(peer, factory, grid, split)
            results[peer], params[peer] = row_of(model, split, seconds, users, peer), setting
            print(f"{peer}: {results[peer]} {setting}", flush=True)
    zoo_seconds = sum(results[n]["train_s"] for n in zoo.names() if n in results)
    print_table(name, results, params)
    for ranker, shares in importance.items():
        print(f"{ranker} leaned on (share of LightGBM gain by signal group): {shares}")
    print(f"default zoo trained in {zoo_seconds:.1f} s ({', '.join(n for n in zoo.names() if n in results)})")
    return summarise(name, results, params, importance, zoo_seconds, split, users)


def summarise(name, results, params, importance, zoo_seconds, split, users) -> dict:
    peers = {n: r for n, r in results.items() if n.startswith("cornac_") or n == VISUAL_PEER}
    ours = {n: r for n, r in results.items() if n not in peers}
    best = max(ours, key=lambda n: ours[n]["ndcg@20"]) if ours else None
    peer = max(peers, key=lambda n: peers[n]["ndcg@20"]) if peers else None
    ratio = ours[best]["ndcg@20"] / peers[peer]["ndcg@20"] if best and peer and peers[peer]["ndcg@20"] else None
    out = {"models": {n: {k: clean(v) for k, v in r.items()} for n, r in results.items()},
           "best_model": best, "best_peer": peer, "ndcg_ratio": clean(ratio), "zoo_train_s": round(zoo_seconds, 1),
           "signal_importance": importance, "split": split.report, "protocol": split.protocol,
           "params": {n: {k: clean(v) for k, v in p.items()} for n, p in params.items()}}
    goals = TARGETS.get(name, {})
    checks = {}
    if "ndcg_ratio" in goals and ratio is not None:
        checks[f"ndcg_ratio>={goals['ndcg_ratio']:.2f}"] = ratio >= goals["ndcg_ratio"]
    if "cold_recall@20" in goals and best:
        checks[f"best_model_cold_recall@20>={goals['cold_recall@20']:.2f}"] = \
            results[best]["cold_recall@20"] >= goals["cold_recall@20"]
    if "zoo_train_s" in goals:
        checks[f"zoo_train_s<={goals['zoo_train_s']:.0f}"] = zoo_seconds <= goals["zoo_train_s"]
    out["targets"] = checks
    # the main job's gate (significance over users, segments) on this split: the best of ours
    # challenging the strongest peer and EASE (the champion before two_stage)
    out["gate"] = [gate_of(best, users, other) for other in (peer, "ease") if best and other in users and other != best]
    return out


def print_table(dataset: str, results: dict, params: dict) -> None:
    header = f"{'model (' + dataset + ')':28s}" + "".join(f"{c:>15s}" for c in (*COLUMNS, "train_s"))
    print("\n" + header + "\n" + "-" * len(header))
    for name, row in sorted(results.items(), key=lambda kv: -kv[1]["ndcg@20"]):
        cells = "".join(f"{row[c]:15.4f}" for c in COLUMNS) + f"{row['train_s']:15.2f}"
        print(f"{name:28s}{cells}   {params.get(name, {})}")


def clean(value):
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if not math.isfinite(value) else round(value, 5)
    return value.item() if isinstance(value, np.generic) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", help="a dataset (repeatable); default: "
                        + ", ".join(DEFAULT_DATASETS))
    parser.add_argument("--only", nargs="*", help="run only these rankers (names as in the table)")
    parser.add_argument("--all", action="store_true", help="every available ranker, not only the default zoo")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores", flush=True)
    names = zoo.available() if args.all else zoo.names()

    def wanted(name: str) -> bool:
        return not args.only or name in args.only

    summaries = {name: run_dataset(name, names, wanted) for name in args.dataset or DEFAULT_DATASETS}
    main_name = "movielens-small" if "movielens-small" in summaries else next(iter(summaries))
    head = summaries[main_name]
    print(json.dumps({"dataset": main_name, "ndcg_ratio": head["ndcg_ratio"], "best_model": head["best_model"],
                      "best_peer": head["best_peer"], "models": head["models"], "zoo_train_s": head["zoo_train_s"],
                      "targets": {n: s["targets"] for n, s in summaries.items()},
                      "load_average_at_start": [round(v, 2) for v in load],
                      "datasets": {n: {k: v for k, v in s.items() if k != "protocol"} for n, s in summaries.items()},
                      "protocol": head["protocol"]}, default=clean))


if __name__ == "__main__":
    main()
