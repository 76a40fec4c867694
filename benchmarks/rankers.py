"""Every visrec ranker against Cornac's MostPop, BPR and VBPR on MovieLens, in one run, one split,
scored by our metric code (../shared/docs/evaluation.md).

    flock /tmp/visrec-bench.lock python -m benchmarks.rankers      # from the repo root

Protocol: positives = rating >= 4, catalogue = movies with a poster (that embeds), per-user
chronological 80/20 split. Our rankers choose hyper-parameters and epochs on the VALIDATION slice
(fit on ``tune_data``, early stopping on ``validation``), then are refit on all of train for the
chosen epochs: that refit is ``train_s``. Cornac's peers run with the settings named below, and
``bpr_cornac_settings`` / ``vbpr_cornac_settings`` are ours with exactly the peer's epochs, factors
and learning rate: the training-time targets compare those like for like.
Image features: EfficientNet-Lite0 (``vision.encoders``), cached in ~/.cache/visrec/bench/.
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
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
from visrec_pipelines.recsys.iterative import IterativeRanker
from visrec_pipelines.recsys.metrics import evaluate
from visrec_pipelines.recsys.split import Split, make_split

REPO = Path(__file__).resolve().parents[1]
MOVIELENS = Path(os.environ.get("VISREC_MOVIELENS", REPO.parent / "shared" / "datasets" / "movielens-small"))
CACHE = Path(os.environ.get("VISREC_BENCH_CACHE", Path.home() / ".cache" / "visrec" / "bench"))
SEED = 0
COLUMNS = ("ndcg@20", "recall@20", "precision@20", "auc", "coverage@20", "cold_recall@20")
# This benchmark's grids, wider than the zoo's (a ranker not listed searches its class's ``tuning``).
GRIDS = {
    "itemknn": {"neighbours": [50, 100, 200, 400, 800]},
    "ease": {"l2": [50, 100, 200, 400, 800]},
    "bpr": {"factors": [64, 128], "lr": [0.05], "reg": [0.01, 0.003], "epochs": [300], "patience": [4]},
    "vbpr": {"factors": [32], "visual_factors": [32], "lr": [0.005, 0.01], "negatives": ["all", "warm"],
             "epochs": [60], "patience": [3]},
    "amr": {"factors": [32], "visual_factors": [32], "lr": [0.005, 0.01], "epochs": [60], "patience": [3],
            "epsilon": [0.1]},
}


def grid(**axes) -> list[dict]:
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def our_rankers() -> dict[str, tuple[type, list[dict]]]:
    """name → (class, hyper-parameter grid searched on the validation slice): every ranker in the
    zoo's registry, plus the content ranker without the posters (an ablation, at the same L2)."""
    registry = {}
    for name, cls in zoo.rankers().items():
        registry[name] = (cls, grid(**GRIDS.get(name, cls.tuning if has_epochs(cls) else {})))
        if name == "visual_content":
            registry["visual_content_no_image"] = (cls, grid(weight_decay=[1e-3], use_image=[False]))
    return registry


def visual_rankers() -> set[str]:
    """The rankers that use image features (the registry's ``needs``, and our VBPR at Cornac's settings)."""
    return {name for name, cls in zoo.rankers().items() if "image_features" in cls.needs} | {"vbpr_cornac_settings"}


def has_epochs(cls) -> bool:
    """Trained for a number of epochs (so tuned with early stopping on the validation slice)?"""
    return issubclass(cls, IterativeRanker)


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


def movielens_split(root: Path) -> tuple[Split, str]:
    item_ids, features, encoder_id = poster_features(root)
    movies = pd.read_csv(root / "movies.csv", dtype=str)
    movie_ids = movies[movies.columns[0]]
    catalogue = movie_ids[movie_ids.isin(set(item_ids))].to_numpy()   # movies with a usable poster
    row = {item: n for n, item in enumerate(item_ids)}
    split = make_split(movielens_events(root), catalogue,
                       item_features=features[[row[i] for i in catalogue]])
    movies.columns = ["item_id", *movies.columns[1:]]
    return split.with_item_content(item_content(movies, split.train.item_ids)), encoder_id


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
        return np.stack([np.asarray(self.model.score(int(u)), dtype=np.float64)
                         for u in np.atleast_1d(users)])


def cornac_peers() -> dict:
    from cornac.models import BPR, VBPR, MostPop

    return {
        "cornac_mostpop": (lambda: CornacRanker(MostPop(), "cornac_mostpop"), {}),
        "cornac_bpr": (lambda: CornacRanker(BPR(k=64, max_iter=200, learning_rate=0.05, lambda_reg=0.01,
                                                seed=SEED, verbose=False), "cornac_bpr"),
                       {"k": 64, "max_iter": 200, "learning_rate": 0.05, "lambda_reg": 0.01}),
        "cornac_vbpr": (lambda: CornacRanker(VBPR(k=32, k2=32, n_epochs=20, learning_rate=0.005,
                                                  seed=SEED, use_gpu=False, verbose=False),
                                             "cornac_vbpr", images=True),
                        {"k": 32, "k2": 32, "n_epochs": 20, "learning_rate": 0.005, "batch_size": 100}),
    }


# --- running --------------------------------------------------------------------------------------

def tune(cls, candidates: list[dict], split: Split) -> tuple[dict, float]:
    """The candidate with the best validation NDCG@20 (fit on tune_data, stopped on validation)."""
    tuning = split.for_tuning()
    best, best_ndcg = None, -1.0
    for params in candidates:
        model = cls(seed=SEED, **params).fit(tuning.train, tuning.test)
        ndcg = float(evaluate(model, tuning, with_auc=False)["ndcg@20"])
        epochs = int(model.best_epoch) if has_epochs(cls) and model.best_epoch else None
        chosen = {**params, **({"epochs": epochs, "patience": None} if epochs else {})}
        print(f"  tune {cls.__name__:16s} {params} -> val ndcg@20 {ndcg:.4f}"
              + (f", best epoch {epochs}" if epochs else ""), flush=True)
        if ndcg > best_ndcg:
            best, best_ndcg = chosen, ndcg
    return best, best_ndcg


def timed_fit_and_score(model: Ranker, split: Split, fitted: dict | None = None) -> dict:
    """Metrics and train time of ``model`` refit on all of train; the model is kept in ``fitted``."""
    started = time.perf_counter()
    model.fit(split.fit_data())
    seconds = time.perf_counter() - started
    metrics = evaluate(model, split)
    if fitted is not None:
        fitted[model.name] = model
    return {**{c: float(metrics[c]) for c in COLUMNS}, "train_s": round(seconds, 3)}


def adversarial_robustness(fitted: dict, split: Split, epsilons=(0.05, 0.1, 0.2)) -> dict:
    """Relative NDCG@20 drop of VBPR and AMR under the same FGSM attack on the image features."""
    from visrec_pipelines.recsys.models.amr import robustness

    out = {}
    for name in ("vbpr", "amr"):
        if name in fitted:
            out[name] = {str(e): robustness(fitted[name], split, e) for e in epsilons}
            print(f"robustness {name}: " + ", ".join(
                f"eps {e}: ndcg {r['ndcg@20']:.4f} -> {r['ndcg@20_attacked']:.4f} "
                f"(-{100 * r['ndcg@20_drop']:.1f}%)" for e, r in out[name].items()), flush=True)
    return out


def print_table(results: dict, params: dict) -> None:
    header = f"{'model':26s}" + "".join(f"{c:>15s}" for c in (*COLUMNS, "train_s"))
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        cells = "".join(f"{row[c]:15.4f}" for c in COLUMNS) + f"{row['train_s']:15.2f}"
        print(f"{name:26s}{cells}   {params.get(name, {})}")


def clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return round(value, 5) if isinstance(value, float) else value


def run_ours(split: Split, wanted, fitted: dict) -> tuple[dict, dict]:
    results, params = {}, {}
    progress = {"progress": sys.stderr.isatty()}
    for name, (cls, candidates) in our_rankers().items():
        if not wanted(name):
            continue
        extra = progress if has_epochs(cls) else {}
        if len(candidates) > 1 or has_epochs(cls):
            chosen, val_ndcg = tune(cls, candidates, split)
        else:
            chosen, val_ndcg = candidates[0], float("nan")
        results[name] = timed_fit_and_score(cls(seed=SEED, **chosen, **extra), split, fitted)
        params[name] = {**chosen, "val_ndcg@20": round(val_ndcg, 4)}
        print(f"{name}: {results[name]}", flush=True)
    # the same epochs, factors and learning rate as the Cornac peer, no early stopping: the time
    # targets compare training budgets like for like (the tuned rows above choose their own epochs)
    from visrec_pipelines.recsys.models.bpr import BPR
    from visrec_pipelines.recsys.models.vbpr import VBPR

    same_settings = {
        "bpr_cornac_settings": (BPR, {"factors": 64, "epochs": 200, "lr": 0.05, "reg": 0.01}),
        "vbpr_cornac_settings": (VBPR, {"factors": 32, "visual_factors": 32, "epochs": 20, "lr": 0.005}),
    }
    for name, (cls, settings) in same_settings.items():
        if wanted(name):
            params[name] = settings
            results[name] = timed_fit_and_score(cls(seed=SEED, patience=None, **settings), split)
            print(f"{name}: {results[name]}", flush=True)
    return results, params


def targets(results: dict, ratio: float | None) -> dict:
    """The goals of this benchmark, checked on this run's numbers."""
    def get(name, key):
        return results.get(name, {}).get(key)

    visual = {n: r["cold_recall@20"] for n, r in results.items()
              if n in visual_rankers() and math.isfinite(r["cold_recall@20"])}
    out = {"ndcg_ratio>=1.10": None if ratio is None else ratio >= 1.10}
    if visual:
        best_cold = max(visual, key=visual.get)
        out["visual_cold_recall>=0.02"] = {"model": best_cold, "cold_recall@20": round(visual[best_cold], 5),
                                           "met": visual[best_cold] >= 0.02}
    if get("bpr_cornac_settings", "train_s") and get("cornac_bpr", "train_s"):
        time_ratio = get("bpr_cornac_settings", "train_s") / get("cornac_bpr", "train_s")
        out["bpr_time<=cornac_bpr(same epochs, factors)"] = {"time_ratio": round(time_ratio, 3),
                                                             "met": time_ratio <= 1.0}
    for ours in ("vbpr_cornac_settings", "vbpr"):   # same budget as the peer; tuned (own epochs)
        if get(ours, "train_s") and get("cornac_vbpr", "train_s"):
            time_ratio = get(ours, "train_s") / get("cornac_vbpr", "train_s")
            better = get(ours, "ndcg@20") >= get("cornac_vbpr", "ndcg@20")
            key = "vbpr_time<=0.25xcornac_vbpr_at>=ndcg" + ("" if ours != "vbpr" else " (tuned vbpr)")
            out[key] = {"model": ours, "time_ratio": round(time_ratio, 3), "ndcg_not_worse": better,
                        "met": time_ratio <= 0.25 and better}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these rankers (names as in the table)")
    args = parser.parse_args()
    split, encoder_id = movielens_split(MOVIELENS)
    print(f"protocol {split.protocol}\nsplit {split.report}\nimage features {encoder_id}", flush=True)

    def wanted(name: str) -> bool:
        return not args.only or name in args.only

    fitted: dict = {}
    results, params = run_ours(split, wanted, fitted)
    robust = adversarial_robustness(fitted, split)
    for name, (factory, settings) in cornac_peers().items():
        if wanted(name):
            results[name], params[name] = timed_fit_and_score(factory(), split), settings
            print(f"{name}: {results[name]}", flush=True)

    print()
    print_table(results, params)
    ours = {n: r for n, r in results.items() if not n.startswith("cornac_")}
    peers = {n: r for n, r in results.items() if n.startswith("cornac_")}
    best_ours = max(ours, key=lambda n: ours[n]["ndcg@20"]) if ours else None
    best_peer = max(peers, key=lambda n: peers[n]["ndcg@20"]) if peers else None
    ratio = ours[best_ours]["ndcg@20"] / peers[best_peer]["ndcg@20"] if best_ours and best_peer else None
    print(json.dumps({"models": {n: {k: clean(v) for k, v in r.items()} for n, r in results.items()},
                      "best_ours": best_ours, "best_peer": best_peer, "ndcg_ratio": clean(ratio),
                      "targets": targets(results, ratio),
                      "adversarial_ndcg_drop": {n: {e: clean(r["ndcg@20_drop"]) for e, r in per.items()}
                                                for n, per in robust.items()},
                      "protocol": split.protocol, "split": split.report, "image_features": encoder_id,
                      "params": {n: {k: clean(v) for k, v in p.items()} for n, p in params.items()}}))


if __name__ == "__main__":
    main()
