"""Serving benchmark: load from a second process on loopback against `visrec serve`.

    python -m benchmarks.serving [--items 10000] [--users 2000] [--concurrency 32] [--duration 10]

Builds a synthetic shop in a temporary root (10k items with clustered 1280-d unit vectors and tags in
an index snapshot, shoppers with a taste, a BPR champion registered in MLflow exactly as the
pipeline registers one), starts `visrec serve` in a subprocess on a free loopback port (the real
loading path: registry alias -> pyfunc artifact -> smoke test; snapshot -> neighbour table), waits
for /readyz, then runs a load generator in another subprocess: `concurrency` keep-alive HTTP/1.1
connections (asyncio + uvloop, a few lines of raw HTTP so the client costs little CPU), each sending
its next request as soon as the last one answered, for `duration` seconds per endpoint after a
warm-up. Phases: the bare endpoint (/healthz, the baseline), /recommendations/{user} (10% unknown
users, 20% with a tag filter), /items/{id}/similar (20% with a tag filter), then the bare endpoint
again (the baseline is their mean, so drift from other work on the machine shows up in both).

Prints a table, then as its LAST line one JSON object: recommend_p50_ms, recommend_p99_ms,
similar_p99_ms, throughput_ratio (min over the two endpoints of rps / bare rps), errors (non-200
answers and failed connections, all phases), the server's resident memory once ready and its peak
(server_ready_rss_mb, server_peak_rss_mb), and more.
"""
import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_P99_MS, TARGET_RATIO = 30.0, 0.5
DATASET = "bench"
SHOP_FILE = "shop.json"   # what --keep leaves for --reuse: users, items, tags, champion


# --- the synthetic shop ----------------------------------------------------------------------------

def shop_settings(root: Path):
    """The settings of the shop under ``root``; the server subprocess gets them as its environment."""
    from visrec_pipelines.settings import Settings

    return Settings(root=root, assets=root / "assets", warehouse=root / "warehouse", dataset=DATASET,
                    mlflow_tracking_uri=None)


def build_shop(root: Path, n_items: int, n_users: int, dim: int, seed: int = 0, champion: str = "bpr") -> dict:
    """Dataset + index snapshot + registered champion (BPR, or ``two_stage`` over the shop's
    image vectors and labels) under ``root``."""
    import pandas as pd

    from visrec_pipelines.data.contract import write_table
    from visrec_pipelines.index.exact import ExactIndex, unit_rows
    from visrec_pipelines.index.neighbours import prepare_snapshot
    from visrec_pipelines.recsys.bundle import RankerBundle
    from visrec_pipelines.recsys.models.bpr import BPR
    from visrec_pipelines.recsys.split import make_split

    rng = np.random.default_rng(seed)
    categories = [f"cat{c:02d}" for c in range(20)]
    colours = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "grey"]
    cat = rng.integers(0, len(categories), n_items)
    col = rng.integers(0, len(colours), n_items)
    item_ids = [f"i{i:06d}" for i in range(n_items)]
    # clustered vectors: an item looks like others of its category and colour
    centres = rng.normal(size=(len(categories) * len(colours), dim)).astype(np.float32)
    vectors = unit_rows(centres[cat * len(colours) + col]
                        + 1.2 * rng.normal(size=(n_items, dim)).astype(np.float32))
    tags = [[categories[c], colours[k], f"style{s}"] for c, k, s in zip(cat, col, rng.integers(0, 30, n_items))]
    items = pd.DataFrame({"item_id": item_ids, "image_path": "", "title": [f"{colours[k]} {categories[c]} #{i}"
                          for i, (c, k) in enumerate(zip(cat, col))], "category": [categories[c] for c in cat]})
    settings = shop_settings(root)
    dataset = settings.dataset_folder().root
    write_table(items, dataset / "items.csv")
    # shoppers: each likes two categories; ~25 interactions, popular items more often
    popularity = rng.zipf(1.6, n_items).astype(float)
    rows = []
    start = np.datetime64("2025-01-01T00:00:00", "s")
    for u in range(n_users):
        liked = rng.choice(len(categories), 2, replace=False)
        pool = np.flatnonzero(np.isin(cat, liked))
        weights = popularity[pool] / popularity[pool].sum()
        for n, item in enumerate(rng.choice(pool, 25, p=weights)):
            rows.append((f"u{u:05d}", item_ids[item], "click", None,
                         str(start + np.timedelta64(int(u * 100 + n), "m")) + "Z"))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "value", "timestamp"])
    write_table(events, dataset / "events.csv")
    snapshot = ExactIndex(item_ids, vectors, [categories[c] for c in cat], tags, source="visrec_items_bench_1")
    prepare_snapshot(snapshot)          # the table and the IVF, as the item_index asset stores them
    snapshot.save(settings.warehouse_for().item_index_snapshot)

    typed = events.assign(value=1.0, timestamp=pd.to_datetime(events["timestamp"], utc=True))
    split = make_split(typed, item_ids, min_positives=5)
    started = time.perf_counter()
    if champion == "two_stage":
        from visrec_pipelines.recsys.item_content import item_content
        from visrec_pipelines.recsys.models.two_stage import TwoStageRanker

        split = split.with_item_features(vectors).with_item_content(item_content(items, split.train.item_ids))
        ranker = TwoStageRanker().fit(split.train, split.validation)
        params = {}
    else:
        ranker = BPR(factors=64, epochs=30, patience=None).fit(split.train)
        params = {"factors": "64"}
    train_s = time.perf_counter() - started
    bundle = RankerBundle.from_training(ranker, split.train)
    registry = settings.registry()
    _, version = registry.log_ranker(bundle, champion, {}, params, {"benchmark": "serving"})
    registry.set_champion(version)
    return {"users": [str(u) for u in split.train.user_ids], "items": item_ids, "item_tags": tags,
            "version": version, "tags": categories + colours, "train_s": train_s}


# --- the load generator (runs in its own process) ------------------------------------------------

async def _worker(host, port, requests, start_ns, stop_ns, latencies, errors, answered, rng):
    reader = writer = None
    while time.perf_counter_ns() < stop_ns:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                errors.append("connect")
                await asyncio.sleep(0.01)
                continue
        request = requests[rng.randrange(len(requests))]
        began = time.perf_counter_ns()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            errors.append(type(exc).__name__)
            writer.close()
            reader = writer = None
            continue
        ended = time.perf_counter_ns()
        answered.append(1)
        if began >= start_ns:            # warm-up answers are not counted
            latencies.append(ended - began)
            if status != 200:
                errors.append(f"HTTP {status}")
    if writer is not None:
        writer.close()


async def _load(host, port, paths, concurrency, warmup, duration, seed):
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode() for p in paths]
    start_ns = time.perf_counter_ns() + int(warmup * 1e9)
    stop_ns = start_ns + int(duration * 1e9)
    latencies, errors, answered = [], [], []
    await asyncio.gather(*(_worker(host, port, requests, start_ns, stop_ns, latencies, errors, answered,
                                   random.Random(seed + i)) for i in range(concurrency)))
    measured = (time.perf_counter_ns() - start_ns) / 1e9
    ms = np.asarray(latencies, dtype=np.float64) / 1e6
    return {"requests": len(ms), "all_requests": len(answered), "rps": len(ms) / measured, "errors": len(errors),
            "error_kinds": sorted(set(errors))[:5],
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "max_ms": float(ms.max()) if len(ms) else None}


def load_main(args) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    paths = Path(args.paths_file).read_text().split("\n")
    result = asyncio.run(_load("127.0.0.1", args.port, [p for p in paths if p], args.concurrency,
                               args.warmup, args.duration, args.seed))
    print(json.dumps(result))


def run_load(port: int, paths: list[str], concurrency: int, duration: float, warmup: float, scratch: Path,
             name: str) -> dict:
    paths_file = scratch / f"{name}.paths"
    paths_file.write_text("\n".join(paths))
    output = subprocess.run([sys.executable, "-m", "benchmarks.serving", "--load", "--port", str(port),
                             "--paths-file", str(paths_file), "--concurrency", str(concurrency),
                             "--duration", str(duration), "--warmup", str(warmup)],
                            capture_output=True, text=True, check=True, timeout=duration + warmup + 120,
                            cwd=Path(__file__).resolve().parents[1])
    return json.loads(output.stdout.strip().splitlines()[-1])


# --- the run ---------------------------------------------------------------------------------------

def request_paths(shop: dict, kind: str, n: int = 5000, seed: int = 7) -> list[str]:
    """Recommendations: 10% unknown users, 20% filtered by a category or colour. Similar items: 20%
    filtered, half by one of the item's own tags (a click on its tag chip), half by any category
    or colour (a filter set beforehand; the expensive case: few of the item's precomputed
    neighbours pass, so the filtered rows are scanned)."""
    rng = random.Random(seed)
    paths = []
    for _ in range(n):
        filtered = rng.random() < 0.2
        if kind == "recommend":
            user = rng.choice(shop["users"]) if rng.random() < 0.9 else f"new-visitor-{rng.randrange(10**6)}"
            paths.append(f"/recommendations/{user}?k=10" + (f"&tags={rng.choice(shop['tags'])}" if filtered else ""))
        else:
            row = rng.randrange(len(shop["items"]))
            tag = (rng.choice(shop["item_tags"][row]) if rng.random() < 0.5 else rng.choice(shop["tags"]))
            paths.append(f"/items/{shop['items'][row]}/similar?k=10" + (f"&tags={tag}" if filtered else ""))
    return paths


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 300) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_memory_mb(pid: int) -> dict:
    """The process's resident memory now and its peak (Linux /proc: VmRSS, VmHWM), in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: round(int(fields[key].split()[0]) / 1024, 1) for name, key in (("rss_mb", "VmRSS"),
                                                                              ("peak_rss_mb", "VmHWM"))}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--keep", type=Path, default=None, help="build the shop here and keep it")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="serve a shop an earlier --keep run built there (no rebuild; kept afterwards)")
    parser.add_argument("--champion", choices=("bpr", "two_stage"), default="bpr",
                        help="the ranker to serve (two_stage: the usual champion; a user's first request "
                             "builds their candidates and features)")
    # the load generator's own entry point (a second process)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--paths-file", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        load_main(args)
        return {}

    root = args.reuse or args.keep or Path(tempfile.mkdtemp(prefix="visrec-serving-bench-"))
    # `visrec serve` reads its Settings from the environment: the same locations as shop_settings
    env = {**os.environ, "VISREC_ROOT": str(root), "VISREC_ASSETS": str(root / "assets"),
           "VISREC_WAREHOUSE": str(root / "warehouse"), "VISREC_SERVING_ENCODER": "none",
           "OPENBLAS_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("VISREC_API_KEY", None)
    server = None
    try:
        started = time.perf_counter()
        if args.reuse is not None:
            shop = json.loads((root / SHOP_FILE).read_text())
            args.items, args.dim, args.champion = len(shop["items"]), shop["dim"], shop["champion"]
        else:
            shop = build_shop(root, args.items, args.users, args.dim, champion=args.champion)
            if args.keep is not None:
                (root / SHOP_FILE).write_text(json.dumps({**shop, "dim": args.dim, "champion": args.champion}))
        print(f"shop: {args.items} items x {args.dim}-d, {len(shop['users'])} users, {args.champion} champion "
              f"v{shop['version']} (trained {shop['train_s']:.1f}s), built in {time.perf_counter() - started:.1f}s")
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "visrec_pipelines.cli", "serve", "--dataset", DATASET,
                                   "--port", str(port), "--encoder", "none"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started = time.perf_counter()
        ready = wait_ready(port, server)
        start_s = time.perf_counter() - started
        ready_memory = process_memory_mb(server.pid)
        print(f"server ready in {start_s:.1f}s: champion v{ready['champion_version']}, "
              f"index {ready['index_version']}")
        scratch = root / "bench-load"
        scratch.mkdir(exist_ok=True)
        phases = [("bare", ["/healthz"]), ("recommend", request_paths(shop, "recommend")),
                  ("similar", request_paths(shop, "similar")), ("bare_again", ["/healthz"])]
        results = {}
        for name, paths in phases:
            cpu_before = process_cpu_seconds(server.pid)
            results[name] = run_load(port, paths, args.concurrency, args.duration, args.warmup, scratch, name)
            # the server's own CPU per answered request (warm-up included): its cost, whatever the client's
            results[name]["server_cpu_us"] = ((process_cpu_seconds(server.pid) - cpu_before) * 1e6
                                              / max(results[name]["all_requests"], 1))
        final_memory = process_memory_mb(server.pid)
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        if args.keep is None and args.reuse is None:
            shutil.rmtree(root, ignore_errors=True)

    bare_rps = (results["bare"]["rps"] + results["bare_again"]["rps"]) / 2
    ratio = min(results["recommend"]["rps"], results["similar"]["rps"]) / bare_rps
    errors = sum(r["errors"] for r in results.values())
    from tabulate import tabulate

    print(tabulate([[n, r["requests"], f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                     f"{r['max_ms']:.1f}", r["errors"], f"{r['server_cpu_us']:.0f}"] for n, r in results.items()],
                   headers=["endpoint", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors",
                            "server CPU us/req"]))
    summary = {
        "recommend_p50_ms": round(results["recommend"]["p50_ms"], 3),
        "recommend_p99_ms": round(results["recommend"]["p99_ms"], 3),
        "similar_p50_ms": round(results["similar"]["p50_ms"], 3),
        "similar_p99_ms": round(results["similar"]["p99_ms"], 3),
        "throughput_ratio": round(ratio, 3),
        "errors": errors,
        "recommend_rps": round(results["recommend"]["rps"], 1),
        "similar_rps": round(results["similar"]["rps"], 1),
        "bare_rps": round(bare_rps, 1),
        "bare_p99_ms": round(max(results["bare"]["p99_ms"], results["bare_again"]["p99_ms"]), 3),
        "server_cpu_us_per_request": {n: round(r["server_cpu_us"], 1) for n, r in results.items()},
        "targets_met": bool(max(results["recommend"]["p99_ms"], results["similar"]["p99_ms"]) <= TARGET_P99_MS
                            and ratio >= TARGET_RATIO and errors == 0),
        "start_s": round(start_s, 2), "server_ready_rss_mb": ready_memory["rss_mb"],
        "server_peak_rss_mb": final_memory["peak_rss_mb"], "items": args.items, "dim": args.dim,
        "users": len(shop["users"]),
        "champion": args.champion,
        "concurrency": args.concurrency,
        "duration_s": args.duration, "cpus": os.cpu_count(),
    }
    print(f"targets: p99 <= {TARGET_P99_MS} ms, throughput >= {TARGET_RATIO} x bare, zero errors -> "
          f"{'met' if summary['targets_met'] else 'NOT met'}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
