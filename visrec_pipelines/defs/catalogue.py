"""Catalogue assets: the items table, its images (validated, quarantined) and the item catalogue."""

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    Config,
    Output,
    asset,
    multi_asset,
)

from ..quality.behaviour import ITEMS_SUITE, image_candidates, validate_items
from ..quality.suites import check_names
from ..resources import DatasetsResource
from ..vision.images import ImageCheckCache, ImageLimits, thumbnail_data_uri, validate_images
from .metadata import counts_table, dataset_metadata, gallery, table_preview
from .partitions import DATASETS

GROUP = "catalogue"


@asset(group_name=GROUP, partitions_def=DATASETS,
       description="The dataset's items table as imported (text, unvalidated).")
def catalogue_source(context: AssetExecutionContext, datasets: DatasetsResource) -> Output[pd.DataFrame]:
    dataset = datasets.of(context)
    items = dataset.folder.read_items()
    return Output(items, metadata={**dataset_metadata(dataset.version()), "rows": len(items),
                                   "preview": table_preview(items)})


class ImageCheckConfig(Config):
    min_side: int = ImageLimits.min_side
    max_pixels: int = ImageLimits.max_pixels
    max_bytes: int = ImageLimits.max_bytes
    max_quarantine_fraction: float = 0.2


@multi_asset(
    group_name=GROUP, partitions_def=DATASETS,
    outs={"raw_images": AssetOut(description="Every item image opened, checked and described."),
          "quarantined_images": AssetOut(description="Images that cannot be used, with the reason.")},
    check_specs=[AssetCheckSpec("quarantine_fraction_within_threshold", asset="raw_images", partitions_def=DATASETS,
                                blocking=True, description="Too many bad images stops the run.")],
)
def raw_images(context: AssetExecutionContext, config: ImageCheckConfig, datasets: DatasetsResource,
               catalogue_source: pd.DataFrame):
    dataset = datasets.of(context)
    limits = ImageLimits(config.min_side, config.max_pixels, config.max_bytes)
    ds = dataset.folder
    checks = ImageCheckCache(dataset.warehouse.image_checks)
    cache = checks.load()
    before = dict(cache)
    candidates = image_candidates(catalogue_source)
    accepted, quarantined = validate_images(candidates, ds.image_file, limits, progress=True, cache=cache)
    reused = sum(1 for path, entry in cache.items() if before.get(path) is entry)
    checks.save(cache, keep=set(candidates["image_path"].dropna().astype(str)))
    total = len(candidates)
    fraction = len(quarantined) / total if total else 0.0
    thumbnails = [(f"{r.item_id} ({r.notes or 'ok'})", thumbnail_data_uri(ds.image_file(r.image_path)))
                  for r in accepted.head(8).itertuples()]
    reasons = quarantined["reason"].value_counts().to_dict() if len(quarantined) else {}
    yield Output(accepted, output_name="raw_images", metadata={
        **dataset_metadata(dataset.version()), "images_in": total, "accepted": len(accepted),
        "quarantined": len(quarantined), "normalised": int((accepted["notes"] != "").sum()),
        "opened_now": total - reused, "unchanged_reused": reused,
        "rows_not_checked": len(catalogue_source) - total,   # no id, a repeated id or unreadable row
        "thumbnails": gallery(thumbnails)})
    yield Output(quarantined, output_name="quarantined_images", metadata={
        "rows": len(quarantined), "by_reason": counts_table(reasons),
        "preview": table_preview(quarantined)})
    yield AssetCheckResult(
        check_name="quarantine_fraction_within_threshold", asset_key="raw_images",
        passed=fraction <= config.max_quarantine_fraction, severity=AssetCheckSeverity.ERROR,
        metadata={"quarantine_fraction": fraction, "threshold": config.max_quarantine_fraction})


@multi_asset(
    group_name=GROUP, partitions_def=DATASETS,
    outs={"item_catalogue": AssetOut(description="Valid items that have a usable image."),
          "excluded_items": AssetOut(description="Items left out of the catalogue, with the reason.")},
    check_specs=[AssetCheckSpec(name, asset="item_catalogue", partitions_def=DATASETS)
                 for name in check_names(ITEMS_SUITE)],
)
def item_catalogue(context: AssetExecutionContext, datasets: DatasetsResource, catalogue_source: pd.DataFrame,
                   raw_images: pd.DataFrame, quarantined_images: pd.DataFrame):
    dataset = datasets.of(context)
    outcome = validate_items(catalogue_source)
    valid = outcome.valid
    has_image = valid["item_id"].isin(raw_images["item_id"])
    catalogue = valid[has_image].merge(
        raw_images.drop_duplicates("item_id")[["item_id", "width", "height", "sha256"]],
        on="item_id", how="left")
    image_reasons = {**dataset.folder.import_image_problems(),
                     **quarantined_images.drop_duplicates("item_id").set_index("item_id")["reason"].to_dict()}
    no_image = valid[~has_image]
    no_image = no_image.assign(failed_checks="usable_image", reason=[
        f"no usable image: {image_reasons.get(item_id, 'not checked')}" for item_id in no_image["item_id"]])
    excluded = pd.concat([outcome.quarantined, no_image], ignore_index=True)
    yield Output(catalogue.reset_index(drop=True), output_name="item_catalogue", metadata={
        **dataset_metadata(dataset.version()), "items_in": len(catalogue_source),
        "catalogue_items": len(catalogue), "excluded": len(excluded),
        "without_usable_image": len(no_image), "preview": table_preview(catalogue)})
    yield Output(excluded, output_name="excluded_items", metadata={
        "rows": len(excluded), "preview": table_preview(excluded[["item_id", "title", "reason"]])})
    for expectation in outcome.expectations:
        yield AssetCheckResult(check_name=expectation.check_name, asset_key="item_catalogue",
                               passed=expectation.unexpected_count == 0,
                               severity=AssetCheckSeverity.WARN,
                               metadata={"unexpected_rows": expectation.unexpected_count,
                                         "rule": expectation.reason})
