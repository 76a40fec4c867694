"""Vision assets: embeddings, transfer-learned heads, semantic tags and the Milvus item index."""
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    ConfigMapping,
    DynamicOut,
    DynamicOutput,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    asset,
    graph_asset,
    op,
)

from ..index.updating import update_item_index
from ..resources import (
    DatasetsResource,
    DatasetView,
    DetectorResource,
    EncoderResource,
    RegistryResource,
    VectorIndexResource,
)
from ..vision.content import content_blocks
from ..vision.embedding_job import EmbeddingReport, combine_reports, shard_plan, update_embeddings
from ..vision.embedding_store import EmbeddingStore
from ..vision.fine_tune_runs import fine_tune_and_log
from ..vision.head_runs import train_and_log_heads
from ..vision.heads import label_probabilities
from ..vision.images import thumbnail_data_uri
from ..vision.product_colour import open_colour_store, update_colour_descriptors
from ..vision.similarity import SimilaritySpace, fit_similarity_space, index_needs_rebuild
from ..vision.tagging import combine_tag_tables, detector_tag_lists, tag_items, tag_quality, unchanged_tags
from ..vision.text_embeddings import (
    aligned_text_features,
    item_texts,
    open_text_store,
    shared_text_encoder,
    update_text_embeddings,
)
from ..vision.text_search import TextSearch
from ..warehouse import DamagedWarehouseFile
from .metadata import dataset_metadata, gallery, table_preview
from .partitions import DATASETS

GROUP = "vision"


def open_store(dataset: DatasetView, encoder_id: str) -> EmbeddingStore:
    return EmbeddingStore(dataset.warehouse.embeddings_dir, encoder_id)


class EmbeddingConfig(Config):
    batch_size: int = 32
    parallel_shards: int = 1  # >1: that many steps embed disjoint shards into one store, side by side


EMBEDDING_STEP_IO = "embedding_step_io"   # shard hand-offs between steps (definitions.py: on shared disk)


def _config_for_steps(config: dict) -> dict:
    """The asset's one config (``ops: {image_embeddings: {config: ...}}``) goes to its first step."""
    return {"embedding_shards": {"config": config}}


# dagster/priority (higher starts first when steps wait for a slot of the multiprocess or Celery
# executor). A run's critical path is embeddings -> split -> the slowest ranker -> evaluation, so
# those steps go before the image assets nothing ranks with (tags, colours, fine-tuning), which
# then fill the slots beside the evaluation; the default is 0 (rankers: ``Ranker.train_priority``).
PRIORITY = "dagster/priority"
CRITICAL_PATH = "5"


@op(out=DynamicOut(io_manager_key=EMBEDDING_STEP_IO))
def embedding_shards(config: EmbeddingConfig):
    """One step per shard follows: the executor runs them side by side (processes, Celery workers)."""
    for shard in shard_plan(config.parallel_shards):
        yield DynamicOutput((shard, config.batch_size), mapping_key=shard.key)


@op(out=Out(io_manager_key=EMBEDDING_STEP_IO), tags={PRIORITY: CRITICAL_PATH})
def embed_shard(context: OpExecutionContext, task: tuple, datasets: DatasetsResource, encoder: EncoderResource,
                raw_images: pd.DataFrame) -> EmbeddingReport:
    """Embed one shard's new or changed images into the shared store (and drop its removed items)."""
    shard, batch_size = task
    dataset = datasets.of(context)
    model = encoder.get()
    store = EmbeddingStore.for_encoder(dataset.warehouse.embeddings_dir, model)
    report = update_embeddings(store, model, raw_images, dataset.folder.image_file, shard=shard.as_tuple(),
                               batch_size=batch_size, progress=True)
    report.repairs = list(store.repairs)          # the compacting step reports them
    context.log.info(f"{shard.key}: embedded {report.embedded}, unchanged {report.unchanged}, "
                     f"removed {report.removed}, failures {len(report.failures)}")
    return report


@op
def compact_embeddings(context: OpExecutionContext, reports: list, datasets: DatasetsResource,
                       encoder: EncoderResource) -> Output[pd.DataFrame]:
    """Merge the shards' chunks (no writer is active now) and describe the store."""
    dataset = datasets.of(context)
    model = encoder.get()
    store = EmbeddingStore.for_encoder(dataset.warehouse.embeddings_dir, model)
    store.compact()
    item_ids, _, top_classes, top_probs = store.load()
    repairs = [r for report in reports for r in report.repairs] + store.repairs
    for repair in repairs:
        context.log.warning(f"embedding store repaired: {repair}")
    names = model.class_names or []
    frame = pd.DataFrame({
        "item_id": item_ids, "encoder_id": model.encoder_id,
        "imagenet_top1": [names[c[0]] if names and c is not None else None for c in
                          (top_classes if top_classes is not None else [None] * len(item_ids))],
        "imagenet_top1_prob": top_probs[:, 0] if top_probs is not None else np.nan})
    report = combine_reports(reports)
    return Output(frame, metadata={
        **dataset_metadata(dataset.version()), "encoder_id": model.encoder_id, "runtime": model.runtime,
        "dim": model.dim, "preprocessing": MetadataValue.json(model.preprocessing.describe()),
        "vectors": len(frame), "parallel_shards": len(reports), "repairs": "; ".join(repairs) or "none",
        "embedded_now": report.embedded, "unchanged": report.unchanged, "removed": report.removed,
        "failures": len(report.failures), "images_per_second": round(report.images_per_second, 1)})


@graph_asset(group_name=GROUP, partitions_def=DATASETS,
             config=ConfigMapping(config_fn=_config_for_steps, config_schema=EmbeddingConfig.to_config_schema()),
             description="L2-normalised CNN vectors of every accepted image (incremental; "
                         "parallel_shards steps embed disjoint shards, then one compacts).")
def image_embeddings(raw_images: pd.DataFrame) -> pd.DataFrame:
    reports = embedding_shards().map(lambda task: embed_shard(task, raw_images=raw_images))
    return compact_embeddings(reports.collect())


def aligned_features(dataset: DatasetView, image_embeddings: pd.DataFrame, item_ids) -> tuple[list, np.ndarray]:
    store = open_store(dataset, image_embeddings["encoder_id"].iloc[0])
    ids, features, _, _ = store.load(item_ids)
    return list(ids), features


def item_content(dataset: DatasetView, image_embeddings: pd.DataFrame, text_embeddings: pd.DataFrame,
                 item_ids) -> tuple[list[str], dict[str, np.ndarray]]:
    """The items' feature blocks (image, product colour, text when the catalogue has text)."""
    text_store = None
    if len(text_embeddings):
        text_store = EmbeddingStore(dataset.warehouse.embeddings_dir, text_embeddings["model_id"].iloc[0])
    return content_blocks(open_store(dataset, image_embeddings["encoder_id"].iloc[0]), item_ids,
                          open_colour_store(dataset.warehouse.embeddings_dir), text_store)


@asset(group_name=GROUP, partitions_def=DATASETS,
       description="The product's own colour (studio backdrop removed) as an Oklab histogram per item "
                   "(incremental, keyed by image hash): what colour heads learn the shop's colour names from.")
def product_colours(context: AssetExecutionContext, datasets: DatasetsResource,
                    item_catalogue: pd.DataFrame) -> Output[pd.DataFrame]:
    dataset = datasets.of(context)
    store = open_colour_store(dataset.warehouse.embeddings_dir)
    described, unchanged, removed = update_colour_descriptors(
        store, item_catalogue, lambda p: str(dataset.folder.image_file(p)))
    frame = pd.DataFrame({"item_id": item_catalogue["item_id"].astype(str), "descriptor_id": store.encoder_id})
    return Output(frame, metadata={**dataset_metadata(dataset.version()), "descriptor_id": store.encoder_id,
                                   "described_now": described, "unchanged": unchanged, "removed": removed})


@asset(group_name=GROUP, partitions_def=DATASETS,
       description="Sentence embeddings (all-MiniLM-L6-v2, offline) of each item's title and descriptions; "
                   "incremental, one store per text model id; empty when the catalogue has no text.")
def text_embeddings(context: AssetExecutionContext, datasets: DatasetsResource,
                    item_catalogue: pd.DataFrame) -> Output[pd.DataFrame]:
    dataset = datasets.of(context)
    texts = item_texts(item_catalogue)
    if not (texts.str.strip() != "").any():
        context.log.info("the catalogue has no titles or descriptions: text embeddings skipped")
        return Output(pd.DataFrame({"item_id": pd.Series(dtype=str), "model_id": pd.Series(dtype=str)}),
                      metadata={**dataset_metadata(dataset.version()), "skipped": "no titles or descriptions"})
    encoder = shared_text_encoder()
    store = open_text_store(dataset.warehouse.embeddings_dir, encoder)
    report = update_text_embeddings(store, encoder, item_catalogue, texts)
    with_text = item_catalogue["item_id"].astype(str)[~item_catalogue["item_id"].astype(str).isin(report.without_text)]
    return Output(pd.DataFrame({"item_id": with_text.to_numpy(), "model_id": encoder.model_id}), metadata={
        **dataset_metadata(dataset.version()), "model_id": encoder.model_id, "dim": encoder.dim,
        "embedded_now": report.embedded, "distinct_texts_encoded": report.distinct_texts,
        "unchanged": report.unchanged, "removed": report.removed,
        "items_without_text": len(report.without_text), "seconds": round(report.seconds, 1)})


@asset(group_name=GROUP, partitions_def=DATASETS,
       description="Transfer learning: calibrated heads for the catalogue's own labels over image, product "
                   "colour and text features, tracked as MLflow runs with held-out per-label metrics.")
def tag_heads(context: AssetExecutionContext, datasets: DatasetsResource, registry: RegistryResource,
              image_embeddings: pd.DataFrame, product_colours: pd.DataFrame, text_embeddings: pd.DataFrame,
              item_catalogue: pd.DataFrame) -> Output[list]:
    dataset = datasets.of(context)
    ids, blocks = item_content(dataset, image_embeddings, text_embeddings, item_catalogue["item_id"])
    items = item_catalogue.set_index("item_id").loc[ids].reset_index()
    version = dataset.version()
    heads, run_id, per_label = train_and_log_heads(
        blocks, items, registry.for_dataset(dataset.name),
        run_tags={"dataset": dataset.name, "dataset_version": version["version"],
                  "encoder_id": image_embeddings["encoder_id"].iloc[0], "dagster_run_id": context.run_id})
    if not heads:
        context.log.info("no label columns with enough labelled items: no heads (tags from ImageNet and pixels)")
    overall = {f"{h.group.column}.{k}": round(float(v), 4) for h in heads for k, v in h.metrics.items()}
    return Output(heads, metadata={**dataset_metadata(version), "mlflow_run_id": run_id or "none",
                                   "label_groups": ", ".join(h.group.column for h in heads) or "none",
                                   "feature_blocks": ", ".join(f"{b}:{x.shape[1]}" for b, x in blocks.items()),
                                   "rare_labels": MetadataValue.json({h.group.column: h.rare_labels for h in heads}),
                                   "held_out_metrics": MetadataValue.json(overall),
                                   "per_label": table_preview(per_label.round(3), rows=40)})


class TagConfig(Config):
    min_confidence: float = 0.3
    max_tags: int = 8
    only_items: list[str] = []     # set by catalogue_sensor: re-tag just these, keep the others' tags


class CatalogueChangeConfig(Config):
    """What changed, as the catalogue sensor saw it; empty lists mean "rebuild from scratch"."""
    only_items: list[str] = []     # added or changed
    removed_items: list[str] = []


@asset(group_name=GROUP, partitions_def=DATASETS,
       description="Readable tags with confidences: ImageNet objects, colours, learned heads.")
def semantic_tags(context: AssetExecutionContext, config: TagConfig, datasets: DatasetsResource,
                  detector: DetectorResource, image_embeddings: pd.DataFrame, tag_heads: list,
                  product_colours: pd.DataFrame, text_embeddings: pd.DataFrame,
                  item_catalogue: pd.DataFrame) -> Output[pd.DataFrame]:
    dataset = datasets.of(context)
    store = open_store(dataset, image_embeddings["encoder_id"].iloc[0])
    previous, repairs = _previous_tags(context, dataset) if config.only_items else (None, [])
    wanted = item_catalogue["item_id"]
    if previous is not None:   # incremental: tag the changed items, keep the rest as they were
        kept = unchanged_tags(previous, wanted, config.only_items)
        wanted = wanted[~wanted.isin(kept["item_id"])]
    ids, _, top_classes, top_probs = store.load(wanted)
    _, blocks = item_content(dataset, image_embeddings, text_embeddings, ids)
    items = item_catalogue.set_index("item_id").loc[ids].reset_index()
    paths = [str(dataset.folder.image_file(p)) for p in items["image_path"]]
    object_detector = detector.get()
    detections = detector_tag_lists(object_detector, paths) if object_detector is not None else None
    tags = tag_items(list(ids), paths, top_classes, top_probs,
                     label_probabilities(tag_heads, blocks) if tag_heads and len(ids) else None, detections,
                     min_confidence=config.min_confidence, max_tags=config.max_tags)
    tagged_now = len(tags)
    if previous is not None:
        tags = combine_tag_tables(kept, tags, item_catalogue["item_id"])
        items = item_catalogue.set_index("item_id").loc[tags["item_id"]].reset_index()
        paths = [str(dataset.folder.image_file(p)) for p in items["image_path"]]
    multi = [h.group.column for h in tag_heads if h.group.multi_label]
    quality = tag_quality(tags, items, multi)
    shown = [(f"{r.item_id}: {t}", thumbnail_data_uri(Path(p))) for r, t, p in
             zip(items.head(8).itertuples(), tags["tag_text"].head(8), paths[:8])]
    return Output(tags, metadata={**dataset_metadata(dataset.version()), "items": len(tags),
                                  "tagged_now": tagged_now, "mode": "incremental" if previous is not None else "full",
                                  "mean_tags_per_item": round(float(tags["tag_names"].map(len).mean()), 2),
                                  "detector": "configured" if object_detector is not None else "none",
                                  "repairs": "; ".join(repairs) or "none",
                                  **{k: round(v, 4) for k, v in quality.items()},
                                  "thumbnails": gallery(shown),
                                  "preview": table_preview(tags[["item_id", "tag_text"]])})


def _previous_tags(context: AssetExecutionContext, dataset: DatasetView) -> tuple[pd.DataFrame | None, list]:
    """The last tag table to update in place; None (tag everything) if it is missing or damaged."""
    try:
        return dataset.warehouse.read_table("semantic_tags"), []
    except DamagedWarehouseFile as damaged:
        context.log.warning(f"{damaged}; tagging the whole catalogue instead")
        return None, ["the last tag table could not be read; tagged the whole catalogue"]


@asset(group_name=GROUP, partitions_def=DATASETS,
       description="How similar-item vectors are made: image embedding + the heads' label beliefs (+ text, "
                   "colour), weighted so that neighbours share the catalogue's labels (chosen on training items).")
def similarity_space(context: AssetExecutionContext, datasets: DatasetsResource, image_embeddings: pd.DataFrame,
                     product_colours: pd.DataFrame, text_embeddings: pd.DataFrame, tag_heads: list,
                     item_catalogue: pd.DataFrame) -> Output[SimilaritySpace]:
    dataset = datasets.of(context)
    ids, blocks = item_content(dataset, image_embeddings, text_embeddings, item_catalogue["item_id"])
    items = item_catalogue.set_index("item_id").loc[ids].reset_index()
    space = fit_similarity_space(blocks, items, tag_heads)
    if not space.uses_labels:
        context.log.info("similar items use the raw image embeddings: "
                         f"{space.report.get('reason', 'label beliefs did not help on training items')}")
    return Output(space, metadata={**dataset_metadata(dataset.version()), "image_weight": space.image_weight,
                                   "label_weight": space.label_weight, "text_weight": space.text_weight,
                                   "colour_weight": space.colour_weight, "selection": MetadataValue.json(space.report)})


@asset(group_name=GROUP, partitions_def=DATASETS,
       description="Milvus collection of item vectors (the similarity space's) + tags/category (switched by "
                   "alias), and the exact in-memory snapshot that serving searches.")
def item_index(context: AssetExecutionContext, config: CatalogueChangeConfig, datasets: DatasetsResource,
               vector_index: VectorIndexResource, image_embeddings: pd.DataFrame, semantic_tags: pd.DataFrame,
               text_embeddings: pd.DataFrame, similarity_space: SimilaritySpace,
               item_catalogue: pd.DataFrame) -> Output[pd.DataFrame]:
    dataset = datasets.of(context)
    ids, blocks = item_content(dataset, image_embeddings, text_embeddings, item_catalogue["item_id"])
    ids = np.asarray(ids, dtype=object)
    features = similarity_space.vectors(blocks)
    space_file = dataset.warehouse.similarity_space
    only_items, removed_items = config.only_items, config.removed_items
    if index_needs_rebuild(space_file, similarity_space):   # every vector moved: no in-place update
        only_items, removed_items = [], []
    items = item_catalogue.set_index("item_id").loc[ids]
    tags = semantic_tags.set_index("item_id").reindex(ids)
    categories = tags["top_category"].fillna("").tolist()
    tag_lists = [list(t) if t is not None else [] for t in tags["tag_names"]]
    titles = items["title"].fillna("").tolist()
    update = update_item_index(lambda: vector_index.open(dataset.warehouse), vector_index.lite_file(dataset.warehouse),
                               dataset.warehouse.item_index_snapshot, ids, features, categories, tag_lists, titles,
                               only_items, removed_items, run_tag=context.run_id[:8])
    similarity_space.save(space_file)   # serving maps uploaded pictures into the same space
    for repair in update.repairs:
        context.log.warning(f"item index repaired: {repair}")
    snapshot, collection = update.snapshot, update.collection
    examples = list(ids[: 3])
    rows = []
    for item_id in examples:
        neighbours = snapshot.similar_items(item_id, k=4)
        cells = [(f"query {item_id}", thumbnail_data_uri(dataset.folder.image_file(items.loc[item_id, "image_path"])))]
        cells += [(f"{n} ({s:.2f})", thumbnail_data_uri(dataset.folder.image_file(items.loc[n, "image_path"])))
                  for n, s in neighbours]
        rows.extend(cells)
    frame = pd.DataFrame({"item_id": ids, "category": categories, "collection": collection})
    return Output(frame, metadata={**dataset_metadata(dataset.version()), "collection": collection,
                                   "indexed": update.count, "snapshot": str(dataset.warehouse.item_index_snapshot),
                                   "version": update.version, **update.change, "dim": int(features.shape[1]),
                                   "vectors": "image + label beliefs" if similarity_space.uses_labels else "image",
                                   "repairs": "; ".join(update.repairs) or "none",
                                   "nearest_neighbours": gallery(rows)})


@asset(group_name=GROUP, partitions_def=DATASETS,
       description="What GET /search/text searches: titles and descriptions (words and sentence embeddings) "
                   "and the items' tags.")
def text_search_index(context: AssetExecutionContext, datasets: DatasetsResource, semantic_tags: pd.DataFrame,
                      text_embeddings: pd.DataFrame, item_catalogue: pd.DataFrame) -> Output[pd.DataFrame]:
    dataset = datasets.of(context)
    ids = item_catalogue["item_id"].astype(str).tolist()
    tags = semantic_tags.set_index("item_id").reindex(ids)["tag_names"]
    tag_lists = [list(t) if isinstance(t, (list, np.ndarray)) else [] for t in tags]
    encoder, vectors = None, None
    if len(text_embeddings):
        encoder = shared_text_encoder()
        store = EmbeddingStore(dataset.warehouse.embeddings_dir, text_embeddings["model_id"].iloc[0])
        vectors = aligned_text_features(store, ids, encoder.dim)
    search = TextSearch(ids, item_texts(item_catalogue).tolist(), tag_lists, vectors, encoder)
    search.save(dataset.warehouse.text_search_index)
    return Output(pd.DataFrame({"item_id": ids}), metadata={
        **dataset_metadata(dataset.version()), "items": len(ids), "text_model": getattr(encoder, "model_id", "none"),
        "views": "text meaning, tag meaning, text words, tag words" if encoder else "text words, tag words"})


class FineTuneConfig(Config):
    enabled: bool = True
    time_budget_s: float = 420.0   # training stops after this (the fashion catalogue: ~5 min on 2 cores)
    epochs: int = 6
    trainable_blocks: int = 2      # of Lite0's 16 blocks, the last ones; the rest stay frozen
    max_items: int = 4_000         # a larger catalogue trains on a fixed sample: bounded time and memory
    # a kept encoder embeds the catalogue into its own store right away up to this size; above it
    # that is left to image_embeddings when VISREC_ENCODER_WEIGHTS switches to the encoder (at 100k
    # items it is as long as the embedding asset itself, for an encoder nothing serves yet)
    embed_max_items: int = 20_000


@asset(group_name=GROUP, partitions_def=DATASETS,
       description="Transfer learning proper: Lite0's last blocks fine-tuned on the catalogue's labels, kept only "
                   "when it beats frozen features on validation items; own encoder id, ONNX graph, embeddings "
                   "and MLflow run. Serve it by setting VISREC_ENCODER_WEIGHTS to its weights.")
def fine_tuned_encoder(context: AssetExecutionContext, config: FineTuneConfig, datasets: DatasetsResource,
                       encoder: EncoderResource, registry: RegistryResource, image_embeddings: pd.DataFrame,
                       item_catalogue: pd.DataFrame) -> Output[dict]:
    dataset = datasets.of(context)
    metadata = dataset_metadata(dataset.version())
    if not config.enabled:
        return Output({"kept": False, "message": "switched off by run config"},
                      metadata={**metadata, "message": "switched off by run config"})
    paths = [str(dataset.folder.image_file(p)) for p in item_catalogue["image_path"]]
    result, tuned, run_id = fine_tune_and_log(
        paths, item_catalogue, dataset.warehouse.fine_tuned_weights_dir, registry.for_dataset(dataset.name),
        {"dataset": dataset.name, "base_encoder_id": image_embeddings["encoder_id"].iloc[0],
         "dagster_run_id": context.run_id}, cache_dir=encoder.cache_dir, time_budget_s=config.time_budget_s,
        epochs=config.epochs, trainable_blocks=config.trainable_blocks, max_items=config.max_items)
    context.log.info(result.message)
    summary = {"kept": result.kept, "message": result.message, "encoder_id": tuned.encoder_id if tuned else None,
               "weights_path": str(result.weights_path) if result.kept else None, "mlflow_run_id": run_id}
    if tuned is not None and len(item_catalogue) > config.embed_max_items:
        summary["embedded_now"] = 0
        summary["embedding"] = (f"left to image_embeddings: {len(item_catalogue)} items > embed_max_items "
                                f"{config.embed_max_items}; set VISREC_ENCODER_WEIGHTS to its weights to embed with it")
    elif tuned is not None:   # the catalogue in the new encoder's own store, incrementally
        report = update_embeddings(EmbeddingStore.for_encoder(dataset.warehouse.embeddings_dir, tuned), tuned,
                                   item_catalogue, lambda p: str(dataset.folder.image_file(p)))
        summary["embedded_now"], summary["unchanged"] = report.embedded, report.unchanged
    return Output(summary, metadata={**metadata, **{k: v if v is not None else "none" for k, v in summary.items()},
                                     "seconds": round(result.seconds, 1),
                                     "validation": MetadataValue.json(result.validation)})
