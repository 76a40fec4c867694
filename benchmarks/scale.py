"""How the main job's cost grows with the shop: synthetic shops at several sizes, the whole job at each.

    flock /tmp/visrec-bench.lock python -m benchmarks.scale [--sizes small,medium,large] [--keep DIR]

Sizes (items / users / events): small 3k / 1k / 50k, medium 30k / 10k / 500k, large 100k / 50k / 2M.
The shops are drawn cheaply (the demo generator simulates every shopper against every item, which does
not scale): items in categories, colours and patterns with a small flat product picture each; users with a
favourite category and heavy-tailed activity; events from Zipf popularity within and across categories,
over the same funnel of event types as the demo. Each size runs the pipeline's own `run_pipeline` (default
settings and zoo; the executor `multiprocess`, two steps at a time, as a 2-core machine would run a large
shop: `--executor in_process` for the default) in a child process, while a sampler records the process
tree's RSS; the Dagster step statistics give each asset's wall seconds and the RSS samples inside a
step its peak. Growth exponents: the slope of log(seconds) against log(events) (and items) between the sizes, per asset.
Serving at the largest size: `benchmarks.serving` with that many items and users (start seconds, p99).

Last line, one JSON object: `sizes` (each with items, users, events, total_s, peak_rss_mb, completed,
failed_assets, assets → {seconds, peak_rss_mb}), `growth` (asset → exponent in events, in items),
`serving_start_s_largest`, `serving_p99_ms_largest`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SIZES = {"small": (3_000, 1_000, 50_000), "medium": (30_000, 10_000, 500_000), "large": (100_000, 50_000, 2_000_000)}
CATEGORIES = ["dress", "shirt", "trousers", "shoes", "bag", "hat", "coat", "skirt", "scarf", "belt",
              "sweater", "jacket", "socks", "gloves", "shorts", "boots"]
COLOURS = {"black": (20, 20, 20), "white": (235, 235, 235), "red": (200, 30, 30), "blue": (30, 60, 190),
           "green": (40, 150, 60), "yellow": (230, 210, 40), "grey": (128, 128, 128), "pink": (240, 150, 180),
           "brown": (120, 80, 40), "beige": (220, 200, 160)}
PATTERNS = ["solid", "striped", "dotted", "checked"]
DATASET = "scale"
DAY = 86_400


# --- a synthetic shop, drawn in seconds even at 100k items ------------------------------------------

def draw_shop(root: Path, n_items: int, n_users: int, n_events: int, seed: int = 0) -> Path:
    import pandas as pd
    from PIL import Image, ImageDraw

    from visrec_pipelines.data.contract import Dataset, write_table

    rng = np.random.default_rng(seed)
    dataset = Dataset(root / "assets" / DATASET)
    dataset.images_dir.mkdir(parents=True, exist_ok=True)
    category = rng.integers(len(CATEGORIES), size=n_items)
    colour_names = list(COLOURS)
    colour = rng.integers(len(colour_names), size=n_items)
    pattern = rng.integers(len(PATTERNS), size=n_items)
    added = rng.integers(-365 * DAY, 180 * DAY, size=n_items).clip(0)       # a third arrive during the log
    item_ids = np.char.add("i", np.char.zfill(np.arange(n_items).astype(str), 6))
    for i, item in enumerate(item_ids):                                        # 64 px: cheap to draw and read
        picture = Image.new("RGB", (64, 64), (245, 245, 245))
        fill = COLOURS[colour_names[colour[i]]]
        ImageDraw.Draw(picture).rectangle([10 + category[i] % 4, 8, 54, 56 - category[i] % 8], fill=fill)
        if pattern[i]:
            y = 20 + 8 * pattern[i]
            ImageDraw.Draw(picture).line([(10, y), (54, y)], fill=(0, 0, 0), width=3)
        picture.save(dataset.images_dir / f"{item}.jpg", quality=80)
    items = pd.DataFrame({"item_id": item_ids, "image_path": np.char.add(np.char.add("images/", item_ids), ".jpg"),
                          "title": [f"{colour_names[c].capitalize()} {PATTERNS[p]} {CATEGORIES[k]}"
                                    for c, p, k in zip(colour, pattern, category)],
                          "category": np.asarray(CATEGORIES)[category], "colour": np.asarray(colour_names)[colour],
                          "pattern": np.asarray(PATTERNS)[pattern],
                          "added_at": pd.to_datetime(1_700_000_000 + added, unit="s", utc=True)
                          .strftime("%Y-%m-%dT%H:%M:%SZ")})
    write_table(items, dataset.items_path)

    # users: a favourite category, heavy-tailed activity; items: Zipf popularity inside each category
    activity = rng.pareto(1.5, n_users) + 1.0
    user = rng.choice(n_users, size=n_events, p=activity / activity.sum())
    favourite = rng.integers(len(CATEGORIES), size=n_users)
    popularity = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.9
    by_category = [np.flatnonzero(category == c) for c in range(len(CATEGORIES))]
    item = rng.choice(n_items, size=n_events, p=popularity / popularity.sum())
    in_taste = rng.random(n_events) < 0.6
    for c, members in enumerate(by_category):
        chosen = in_taste & (favourite[user] == c)
        weights = popularity[members] / popularity[members].sum()
        item[chosen] = rng.choice(members, size=int(chosen.sum()), p=weights)
    when = np.maximum(added[item], rng.integers(0, 180 * DAY, size=n_events)) + rng.integers(0, DAY, n_events)
    stage = rng.choice(5, size=n_events, p=[0.62, 0.2, 0.08, 0.05, 0.05])
    kinds = np.asarray(["view", "click", "add_to_cart", "purchase", "rating"])
    value = np.where(stage == 4, rng.integers(1, 6, n_events).astype(str),
                     np.where((stage == 2) | (stage == 3), "1", ""))
    events = pd.DataFrame({"user_id": np.char.add("u", np.char.zfill(user.astype(str), 6)), "item_id": item_ids[item],
                           "event_type": kinds[stage], "value": value,
                           "timestamp": pd.to_datetime(1_700_000_000 + when, unit="s", utc=True)
                           .strftime("%Y-%m-%dT%H:%M:%SZ")}).sort_values("timestamp", kind="stable")
    events["value"] = events["value"].replace("", None)
    write_table(events, dataset.events_path)
    write_table(pd.DataFrame({"user_id": np.char.add("u", np.char.zfill(np.arange(n_users).astype(str), 6))}),
                dataset.users_path)
    return dataset.root


# --- one size, in a child process: the job, its steps' seconds and RSS --------------------------------

def rss_mb(pid: int) -> float:
    import psutil

    try:
        process = psutil.Process(pid)
        return (process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))) / 2**20
    except psutil.Error:
        return 0.0


def run_one(root: Path, executor: str = "multiprocess") -> dict:
    """The main job on the shop under ``root`` (this process): per-asset seconds and peak RSS."""
    from visrec_pipelines.runner import dagster_instance, run_pipeline
    from visrec_pipelines.settings import Settings

    settings = Settings(root=root, assets=root / "assets", warehouse=root / "warehouse",
                        dagster_home=root / "dagster_home", dataset=DATASET, mlflow_tracking_uri=None,
                        executor=executor, max_concurrent=2, automation=False)
    samples, done = [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append((time.time(), rss_mb(os.getpid())))
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    ok = run_pipeline(DATASET, echo=lambda line: print(line, flush=True), settings=settings)
    total = time.perf_counter() - started
    done.set()
    sampler.join()
    assets, failed = {}, []
    with dagster_instance(settings) as instance:
        run = instance.get_runs(limit=1)[0]
        for step in instance.get_run_step_stats(run.run_id):
            inside = [mb for t, mb in samples if step.start_time and step.start_time <= t <= (step.end_time or t)]
            assets[step.step_key] = {"seconds": round((step.end_time or 0) - (step.start_time or 0), 2),
                                     "peak_rss_mb": round(max(inside, default=0.0)), "status": step.status.value}
            if step.status.value != "SUCCESS":
                failed.append(step.step_key)
    return {"ok": ok, "total_s": round(total, 1), "peak_rss_mb": round(max((mb for _, mb in samples), default=0)),
            "assets": assets, "failed_assets": failed}


def growth(sizes: list[dict], axis: str) -> dict[str, float]:
    """Per asset: the least-squares slope of log(seconds) on log(axis) over the completed sizes."""
    done = [s for s in sizes if s["completed"]]
    exponents = {}
    for asset in set().union(*(s["assets"] for s in done)) if len(done) >= 2 else ():
        points = [(math.log(s[axis]), math.log(max(s["assets"][asset]["seconds"], 0.05)))
                  for s in done if asset in s["assets"]]
        if len(points) >= 2:
            x, y = np.array(points).T
            exponents[asset] = round(float(np.polyfit(x, y, 1)[0]), 2)
    return dict(sorted(exponents.items()))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--keep", type=Path, default=None, help="build the shops under this folder and keep them")
    parser.add_argument("--no-serving", action="store_true", help="skip the serving run at the largest size")
    parser.add_argument("--executor", default="multiprocess", choices=["multiprocess", "in_process"],
                        help="multiprocess (default): two steps at a time, each in its own process")
    parser.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        print(json.dumps(run_one(args.run_one, args.executor)))
        return {}

    base = args.keep or Path(tempfile.mkdtemp(prefix="visrec-scale-"))
    results = []
    try:
        for name in args.sizes.split(","):
            n_items, n_users, n_events = SIZES[name]
            root = base / name
            shutil.rmtree(root, ignore_errors=True)
            started = time.perf_counter()
            draw_shop(root, n_items, n_users, n_events)
            print(f"{name}: shop of {n_items} items, {n_users} users, {n_events} events drawn in "
                  f"{time.perf_counter() - started:.0f}s", flush=True)
            child = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--run-one", str(root),
                                    "--executor", args.executor],
                                   capture_output=True, text=True, env={**os.environ, "VISREC_AUTOMATION": "off"})
            lines = child.stdout.strip().splitlines()
            print("\n".join(lines[:-1][-60:]), flush=True)
            try:
                measured = json.loads(lines[-1])
            except (IndexError, json.JSONDecodeError):
                measured = {"ok": False, "total_s": None, "peak_rss_mb": None, "assets": {},
                            "failed_assets": [f"the job's process died: {child.stderr.strip()[-300:]}"]}
            results.append({"size": name, "items": n_items, "users": n_users, "events": n_events,
                            "completed": bool(measured["ok"]) and not measured["failed_assets"], **measured})
            print(f"{name}: total {measured['total_s']}s, peak RSS {measured['peak_rss_mb']} MB, "
                  f"failed {measured['failed_assets']}", flush=True)
            if args.keep is None:
                shutil.rmtree(root, ignore_errors=True)
        serving = {}
        if not args.no_serving:
            from benchmarks import serving as serving_bench

            n_items, n_users, _ = SIZES[args.sizes.split(",")[-1]]
            serving = serving_bench.main(["--items", str(n_items), "--users", str(n_users), "--duration", "5"])
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)

    from tabulate import tabulate

    steps = sorted(set().union(*(r["assets"] for r in results)))
    print(tabulate([[step] + [f"{r['assets'][step]['seconds']:.1f}s / {r['assets'][step]['peak_rss_mb']} MB"
                              if step in r["assets"] else "-" for r in results] for step in steps],
                   headers=["step"] + [f"{r['size']} ({r['events']:,} events)" for r in results]))
    summary = {"executor": args.executor, "sizes": results, "growth_in_events": growth(results, "events"),
               "growth_in_items": growth(results, "items"),
               "serving_start_s_largest": serving.get("start_s"),
               "serving_p99_ms_largest": max(serving.get("recommend_p99_ms", 0), serving.get("similar_p99_ms", 0))
               if serving else None,
               "serving_targets_met_largest": serving.get("targets_met")}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
