"""What a known user's first request costs when the champion is `two_stage`: serving scores the
user, then asks why for the items it shows (``explain``). Measured per user against the way it was
computed before, in the same run: the user's candidate pairs built twice and LightGBM's
contributions (SHAP values) for every candidate, not only the shown ones.

    python -m benchmarks.explain [--dataset movielens-small] [--users 100] [--k 10]

The last line printed is one JSON object: first_request_ms (now), before_ms, speedup, and the
check that both give the same reasons.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def before(ranker, user: int, shown: np.ndarray):
    """The earlier path's work: pairs for the scores, pairs again for the reasons, and every
    candidate's contributions."""
    x, _, _ = ranker._batch_pairs(ranker.sources, np.array([user]))
    ranker.booster.predict(x, num_threads=ranker.threads)
    x, _, candidates = ranker._batch_pairs(ranker.sources, np.array([user]))
    contributions = ranker.booster.predict(x, pred_contrib=True, num_threads=ranker.threads)
    position = {int(i): n for n, i in enumerate(candidates)}
    return {int(i): ranker._by_group(contributions[position[int(i)], :-1]) for i in shown if int(i) in position}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-small")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--k", type=int, default=10, help="items shown (and explained) per request")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")       # as `visrec serve` runs
    from benchmarks.rankers import load_split
    from visrec_pipelines.recsys import zoo

    split, _ = load_split(args.dataset)
    started = time.perf_counter()
    ranker = zoo.train("two_stage", split, seed=0).ranker
    train_s = time.perf_counter() - started
    tested = np.unique(split.test.users)
    users = np.sort(np.random.default_rng(0).choice(tested, min(args.users, len(tested)), replace=False))
    shown = {int(u): ranker.recommend(np.array([u]), k=args.k)[0] for u in users}
    now_s = before_s = 0.0
    same = True
    for u in users.tolist():
        ranker._last_pairs = None                       # a user's first request: nothing kept
        t = time.perf_counter()
        ranker.score(np.array([u]))
        reasons = ranker.explain(u, shown[u])
        now_s += time.perf_counter() - t
        t = time.perf_counter()
        old = before(ranker, u, shown[u])
        before_s += time.perf_counter() - t
        for r in reasons:
            if r["candidate"]:
                expected = old[r["item"]]
                same &= r["pushed_by"].keys() == expected.keys() and bool(np.allclose(
                    list(r["pushed_by"].values()), list(expected.values()), atol=1e-5))
    n = len(users)
    summary = {"dataset": args.dataset, "items": int(split.train.n_items), "users": n, "k": args.k,
               "first_request_ms": round(now_s / n * 1e3, 2), "before_ms": round(before_s / n * 1e3, 2),
               "speedup": round(before_s / now_s, 2), "same_reasons": bool(same), "train_s": round(train_s, 1)}
    print(f"two_stage on {args.dataset} ({summary['items']} items): a user's first request (scores + reasons "
          f"for {args.k}) {summary['first_request_ms']} ms, before {summary['before_ms']} ms "
          f"({summary['speedup']}x); same reasons: {same}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
