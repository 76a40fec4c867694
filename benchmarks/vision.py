"""Image understanding on real catalogues, every figure against a baseline measured in this run.

    flock /tmp/visrec-bench.lock nice -n 10 python -m benchmarks.vision      # from the repo root

Catalogues: the H&M ``fashion-catalogue`` (imported as a shop would be: prod_name -> title,
product_type_name -> category, colour_group_name -> colour; every other column stays and label
groups are found from the data), MovieLens posters + titles (genres, multi-label) and the demo shop.
Held-out items (``label_groups.held_out_mask``) are never trained or tuned on. Per catalogue:
1. heads vs a linear probe (StandardScaler + LogisticRegression(C=1), sklearn, same features,
   same training items) per label group, for image features alone and for all content (image +
   product colour + text); ``ratio_vs_probe`` = head / probe (accuracy, micro-F1 for multi-label);
2. tags through the pipeline's own ``tag_items`` + ``tag_quality`` (category, colour);
3. colour: pixel names mapped to the shop's words (the old way), heads on pixels / image / both;
4. fine-tuned vs frozen encoder (fashion; ``--fine-tune``);
5. similar items: P@10 sharing the query's category / colour (genre), raw image vectors vs the
   ``SimilaritySpace`` vectors, via ``ExactIndex``; queries held out, corpus = the whole catalogue;
6. text search P@10 for label queries ("black dress") vs words-only search over title+description;
7. category accuracy on 25/50/100% of the catalogue (generalisation as it grows).
Features are cached in embedding stores under ~/.cache/visrec/bench/stores. The last line is JSON.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from visrec_pipelines.index.exact import ExactIndex
from visrec_pipelines.vision.colours import colour_shares
from visrec_pipelines.vision.embedding_job import update_embeddings
from visrec_pipelines.vision.embedding_store import EmbeddingStore
from visrec_pipelines.vision.encoders import build_encoder
from visrec_pipelines.vision.heads import (
    LabelGroup,
    find_label_groups,
    held_out_mask,
    label_lists,
    label_probabilities,
    train_head_variants,
)
from visrec_pipelines.vision.images import load_rgb
from visrec_pipelines.vision.product_colour import DESCRIPTOR_DIM, colour_descriptors
from visrec_pipelines.vision.similarity import fit_similarity_space
from visrec_pipelines.vision.tagging import tag_items, tag_quality
from visrec_pipelines.vision.text_embeddings import (
    aligned_text_features,
    item_texts,
    open_text_store,
    shared_text_encoder,
    update_text_embeddings,
)
from visrec_pipelines.vision.text_search import TextSearch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VISREC_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
CACHE = Path(os.environ.get("VISREC_BENCH_CACHE", Path.home() / ".cache" / "visrec" / "bench"))
VARIANTS = {"image": ("image",), "pixels": ("image", "colour"), "content": ("image", "colour", "text")}
PROBED = ("image", "content")
TARGETS = {"min_ratio_vs_probe": 1.0, "category_accuracy": 0.70, "colour_accuracy": 0.60,
           "similar_type_ratio": 1.15, "similar_colour_ratio": 1.5}
warnings.filterwarnings("ignore")


# --- catalogues ---------------------------------------------------------------------------------

def fashion() -> tuple[pd.DataFrame, dict]:
    root = SHARED / "fashion-catalogue"
    items = pd.read_csv(root / "articles.csv", dtype=str, keep_default_na=False, na_values=[""])
    items = items.rename(columns={"article_id": "item_id", "prod_name": "title",
                                  "product_type_name": "category", "colour_group_name": "colour"})
    items["image_path"] = [str(root / "images" / f"{i}.jpg") for i in items["item_id"]]
    return items, {"type": "category", "colour": "colour", "pattern": "graphical_appearance_name"}


def movielens() -> tuple[pd.DataFrame, dict]:
    root = SHARED / "movielens-small"
    movies = pd.read_csv(root / "movies.csv", dtype=str).rename(columns={"movieId": "item_id"})
    movies.columns = ["item_id", *movies.columns[1:]]
    movies["image_path"] = [str(root / "posters" / f"{i}.jpg") for i in movies["item_id"]]
    return movies[[Path(p).is_file() for p in movies["image_path"]]].reset_index(drop=True), {"type": "genres"}


def demo(n_items: int = 2000) -> tuple[pd.DataFrame, dict]:
    from visrec_pipelines.data.demo import generate_demo
    folder = CACHE / f"demo-{n_items}"
    if not (folder / "items.csv").is_file():
        generate_demo(folder, n_items=n_items, n_users=20, seed=0)
    items = pd.read_csv(folder / "items.csv", dtype=str)
    items["image_path"] = [str(folder / p) for p in items["image_path"]]
    return items, {"type": "category", "colour": "colour", "pattern": "pattern"}


# --- features (cached in the library's own incremental stores) -----------------------------------

def image_features(name: str, items: pd.DataFrame, encoder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    store = EmbeddingStore.for_encoder(CACHE / "stores" / name, encoder)
    catalogue = items[["item_id", "image_path"]].assign(
        sha256=[hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in items["image_path"]])
    update_embeddings(store, encoder, catalogue, resolve=str)
    ids, features, top_classes, top_probs = store.load(items["item_id"])
    assert list(ids) == list(items["item_id"]), "every image must embed"
    return features, top_classes, top_probs


def pixel_features(name: str, items: pd.DataFrame) -> np.ndarray:
    path = CACHE / f"colour-{name}-{DESCRIPTOR_DIM}.npz"
    if path.is_file() and list(np.load(path)["item_ids"]) == list(items["item_id"]):
        return np.load(path)["descriptors"]
    descriptors = colour_descriptors(items["image_path"].tolist())
    np.savez(path, item_ids=items["item_id"].to_numpy(str), descriptors=descriptors)
    return descriptors


def text_features(name: str, items: pd.DataFrame) -> np.ndarray:
    encoder = shared_text_encoder()
    store = open_text_store(CACHE / "stores" / name, encoder)
    update_text_embeddings(store, encoder, items)
    return aligned_text_features(store, items["item_id"], encoder.dim)


# --- measurements -------------------------------------------------------------------------------

def probe(x: np.ndarray, labels: list[list[str]], train: np.ndarray, test: np.ndarray, multi: bool) -> float:
    """The plain linear probe: scaled features, sklearn LogisticRegression(C=1), all train labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler
    fit_rows = [i for i in np.flatnonzero(train) if labels[i]]
    test_rows = [i for i in np.flatnonzero(test) if labels[i]]
    if not multi:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(x[fit_rows], [labels[i][0] for i in fit_rows])
        return float(np.mean(model.predict(x[test_rows]) == np.array([labels[i][0] for i in test_rows])))
    binariser = MultiLabelBinarizer().fit([labels[i] for i in fit_rows])
    model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=1000)))
    model.fit(x[fit_rows], binariser.transform([labels[i] for i in fit_rows]))
    predicted = [set(p) for p in binariser.inverse_transform(model.predict(x[test_rows]))]
    truth = [set(labels[i]) for i in test_rows]
    hits = sum(len(p & t) for p, t in zip(predicted, truth))
    precision, recall = hits / max(sum(map(len, predicted)), 1), hits / max(sum(map(len, truth)), 1)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def head_score(head) -> float:
    return head.metrics["accuracy"] if "accuracy" in head.metrics else head.metrics["micro_f1"]


def heads_and_probes(blocks, items, groups, test, seconds) -> tuple[dict, dict]:
    started, table, heads = time.perf_counter(), {}, {v: [] for v in VARIANTS}
    for group in groups:
        variants = train_head_variants(blocks, items, group, {v: tuple(b for b in names if b in blocks)
                                                             for v, names in VARIANTS.items()})
        row = {"labels": len(group.labels), "rare_labels": variants["image"].metrics["rare_labels"]}
        for variant, head in variants.items():
            heads[variant].append(head)
            row[f"head_{variant}"] = head_score(head)
        table[group.column] = row
    seconds["heads"] = time.perf_counter() - started
    started = time.perf_counter()
    for group in groups:
        labels, row = label_lists(items[group.column], group.multi_label), table[group.column]
        for variant in PROBED:
            x = np.hstack([blocks[b] for b in VARIANTS[variant] if b in blocks])
            row[f"probe_{variant}"] = probe(x, labels, ~test, test, group.multi_label)
            row[f"ratio_{variant}"] = row[f"head_{variant}"] / max(row[f"probe_{variant}"], 1e-9)
    seconds["probes"] = time.perf_counter() - started
    return table, heads


def colour_methods(items, blocks, heads, test, column) -> dict:
    """Held-out colour accuracy: pixel names mapped to the shop's words by the training items (the
    old tags' way), a head on pixels only, on image features only, and on both."""
    truth = items[column].to_numpy()
    names = np.array([colour_shares(load_rgb(p)[0])[0][0] for p in items["image_path"]])
    mapping = pd.DataFrame({"pixel": names[~test], "shop": truth[~test]}).dropna()
    mapping = mapping.groupby("pixel")["shop"].agg(lambda s: s.value_counts().index[0])
    out = {"pixel_names_mapped": float(np.mean(pd.Series(names[test]).map(mapping).to_numpy() == truth[test]))}
    colour_only = train_head_variants(blocks, items, LabelGroup(column, False, ()), {"pixels_only": ("colour",)})
    out["head_pixels_only"] = head_score(colour_only["pixels_only"])
    for variant in ("image", "pixels", "content"):
        out[f"head_{variant}"] = head_score(next(h for h in heads[variant] if h.group.column == column))
    return out


def similar_items(items, blocks, heads, test, columns, multi) -> dict:
    space = fit_similarity_space(blocks, items, heads)
    ids = items["item_id"].to_numpy(str)
    out = {"weights": {"image": space.image_weight, "labels": space.label_weight, "text": space.text_weight,
                       "colour": space.colour_weight},
           "dim": int(space.vectors({k: v[:1] for k, v in blocks.items()}).shape[1])}
    for name, vectors in (("raw", blocks["image"]), ("combined", space.vectors(blocks))):
        index = ExactIndex(ids, vectors)
        assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1, atol=1e-4)
        for key, column in columns.items():
            labels = dict(zip(ids, map(set, label_lists(items[column], multi[column]))))
            hits = [len(labels[q] & labels[n]) > 0 for q in ids[test] if labels[q]
                    for n, _ in index.similar_items(q, k=10)]
            out[f"{key}_p10_{name}"] = float(np.mean(hits))
    for key in columns:
        out[f"{key}_ratio"] = out[f"{key}_p10_combined"] / max(out[f"{key}_p10_raw"], 1e-9)
    return out


def text_search(items, text, heads, blocks, test, columns, multi) -> dict:
    """P@10 (hits / min(10, relevant)) of label queries ("black dress": one label per column)
    over the held-out items, tagged by heads that never saw them."""
    rows = np.flatnonzero(test)
    ids = items["item_id"].to_numpy(str)[rows]
    probs = label_probabilities(heads, {b: x[rows] for b, x in blocks.items()})
    tags = [[label for scores in item.values() for label in scores.decided] for item in probs]
    texts = item_texts(items.iloc[rows]).tolist()
    engines = {"search": TextSearch(ids, texts, tags, text[rows], shared_text_encoder()),
               "words_only_baseline": TextSearch(ids, texts, [[] for _ in rows])}
    per_item = list(zip(*[[set(x) for x in label_lists(items[c].iloc[rows], multi[c])] for c in columns]))
    combos = Counter(combo for sets in per_item for combo in itertools.product(*sets))
    queries = [combo for combo, n in combos.most_common() if n >= 2][:100]
    out = {"queries": len(queries), "examples": [" ".join(q).lower() for q in queries[:3]]}
    for name, engine in engines.items():
        scores = []
        for query in queries:
            relevant = {i for i, sets in zip(ids, per_item) if all(q in s for q, s in zip(query, sets))}
            found = {i for i, _ in engine.search(" ".join(query).lower(), k=10)}
            scores.append(len(relevant & found) / min(10, len(relevant)))
        out[f"p10_{name}"] = float(np.mean(scores))
    out["ratio"] = out["p10_search"] / max(out["p10_words_only_baseline"], 1e-9)
    return out


def fine_tuned_vs_frozen(name, items, blocks, heads, groups, key_columns, seconds) -> dict:
    from visrec_pipelines.vision.fine_tune import fine_tune_encoder
    started = time.perf_counter()
    result = fine_tune_encoder(items["image_path"].tolist(), items, CACHE / "fine-tuned" / name, groups=groups)
    seconds["fine_tune"] = time.perf_counter() - started
    out = {"kept": result.kept, "message": result.message, "validation": result.validation,
           "epochs": len(result.history), "fine_tune_seconds": result.seconds}
    started = time.perf_counter()
    encoder = build_encoder(weights_path=result.weights_path)   # its own id, ONNX graph and store
    features, _, _ = image_features(name, items, encoder)
    seconds["fine_tuned_embedding"] = time.perf_counter() - started
    out["encoder_id"] = encoder.encoder_id
    frozen = {v: {h.group.column: head_score(h) for h in heads[v]} for v in ("image", "content")}
    tuned_blocks = {**blocks, "image": features}
    for group in groups:   # image-only heads for every group; all content for category and colour
        wanted = {"image": ("image",), **({"content": VARIANTS["content"]} if group.column in key_columns else {})}
        for variant, head in train_head_variants(tuned_blocks, items, group, wanted).items():
            out.setdefault(f"held_out_{variant}", {})[group.column] = {
                "frozen": frozen[variant][group.column], "fine_tuned": head_score(head)}
    gains = [v["fine_tuned"] - v["frozen"] for v in out["held_out_image"].values()]
    out["mean_held_out_gain"] = float(np.mean(gains))
    return out


def growth(items, blocks, group_column, test, fractions=(0.25, 0.5, 1.0)) -> list[dict]:
    """Category accuracy on nested subsets of the catalogue (a stable hash picks them)."""
    rows = []
    for fraction in fractions:
        subset = held_out_mask(items["item_id"], fraction, salt="subset") if fraction < 1 else np.ones(len(items), bool)
        part = items[subset].reset_index(drop=True)
        part_blocks = {b: x[subset] for b, x in blocks.items()}
        group = next(g for g in find_label_groups(part, min_support=2) if g.column == group_column)
        heads = train_head_variants(part_blocks, part, group, {v: n for v, n in VARIANTS.items() if v in PROBED})
        labels = label_lists(part[group_column], False)
        rows.append({"fraction": fraction, "items": int(subset.sum()), "classes": int(part[group_column].nunique()),
                     "learned_classes": len(group.labels), **{f"head_{v}": head_score(h) for v, h in heads.items()},
                     "probe_image": probe(part_blocks["image"], labels, ~test[subset], test[subset], False)})
    return rows


# --- one catalogue ------------------------------------------------------------------------------

def run(name: str, loader, fine_tune: bool, growth_curve: bool) -> dict:
    seconds, started = {}, time.perf_counter()
    items, columns = loader()
    encoder = build_encoder()
    image, top_classes, top_probs = image_features(name, items, encoder)
    seconds["image_features"] = time.perf_counter() - started
    started = time.perf_counter()
    blocks = {"image": image, "colour": pixel_features(name, items)}
    seconds["colour_features"] = time.perf_counter() - started
    started = time.perf_counter()
    blocks["text"] = text_features(name, items)
    seconds["text_features"] = time.perf_counter() - started
    test = held_out_mask(items["item_id"])
    groups = find_label_groups(items, min_support=2)
    multi = {g.column: g.multi_label for g in groups}
    table, heads = heads_and_probes(blocks, items, groups, test, seconds)
    out = {"items": len(items), "held_out": int(test.sum()), "groups": table,
           "min_ratio_vs_probe": min(r[f"ratio_{v}"] for r in table.values() for v in PROBED)}
    started = time.perf_counter()
    rows = np.flatnonzero(test)
    tags = tag_items(items["item_id"].iloc[rows].tolist(), items["image_path"].iloc[rows].tolist(),
                     top_classes[rows], top_probs[rows],
                     label_probabilities(heads["content"], {b: x[rows] for b, x in blocks.items()}))
    out["tags"] = tag_quality(tags, items.iloc[rows], [c for c, m in multi.items() if m])
    if "category" in items.columns:
        out["tags"]["items_with_category_tag"] = float(tags["top_category"].notna().mean())
    seconds["tags"] = time.perf_counter() - started
    if "colour" in columns:
        started = time.perf_counter()
        out["colour"] = colour_methods(items, blocks, heads, test, columns["colour"])
        seconds["colour_methods"] = time.perf_counter() - started
    started = time.perf_counter()
    similar = {k: columns[k] for k in ("type", "colour") if k in columns}
    out["similar_items"] = similar_items(items, blocks, heads["content"], test, similar, multi)
    seconds["similar_items"] = time.perf_counter() - started
    started = time.perf_counter()
    out["text_search"] = text_search(items, blocks["text"], heads["content"], blocks, test,
                                     [columns[k] for k in ("colour", "type") if k in columns], multi)
    seconds["text_search"] = time.perf_counter() - started
    if fine_tune:
        out["fine_tune"] = fine_tuned_vs_frozen(name, items, blocks, heads, groups,
                                                [columns[k] for k in ("type", "colour") if k in columns], seconds)
    if growth_curve:
        started = time.perf_counter()
        out["growth"] = growth(items, blocks, columns["type"], test)
        seconds["growth"] = time.perf_counter() - started
    out["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    return out


def summary(results: dict) -> dict:
    f = results.get("fashion")
    if f is None:
        return {}
    figures = {"min_ratio_vs_probe": f["min_ratio_vs_probe"], "category_accuracy": f["tags"].get("category_accuracy"),
               "colour_accuracy": f["tags"].get("colour_accuracy"),
               "similar_type_ratio": f["similar_items"]["type_ratio"],
               "similar_colour_ratio": f["similar_items"]["colour_ratio"]}
    figures["met"] = {k: v is not None and v >= TARGETS[k] for k, v in figures.items()}
    return figures


def print_table(results: dict) -> None:
    for name, r in results.items():
        print(f"\n== {name}: {r['items']} items, {r['held_out']} held out; seconds {r['seconds']}")
        frame = pd.DataFrame(r["groups"]).T
        print(frame.round(3).to_string())
        for key in ("tags", "colour", "similar_items", "text_search", "fine_tune"):
            if key in r:
                print(f"{key}: {json.dumps(r[key], default=float)[:600]}")
        if "growth" in r:
            print(pd.DataFrame(r["growth"]).round(3).to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fashion,movielens,demo")
    parser.add_argument("--no-fine-tune", action="store_true", help="skip fine-tuning (fashion)")
    args = parser.parse_args()
    loaders = {"fashion": fashion, "movielens": movielens, "demo": demo}
    started, results = time.perf_counter(), {}
    for name in args.datasets.split(","):
        results[name] = run(name, loaders[name], fine_tune=name == "fashion" and not args.no_fine_tune,
                            growth_curve=name == "fashion")
        print(f"{name} done after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        print_table({name: results[name]})   # as each catalogue finishes: a long run shows progress
        sys.stdout.flush()
    print(json.dumps({**summary(results), "targets": TARGETS, "datasets": results,
                      "seconds": round(time.perf_counter() - started, 1)}, default=float))


if __name__ == "__main__":
    main()
