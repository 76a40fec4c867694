"""Small helpers that turn tables and images into Dagster metadata people can look at."""
from __future__ import annotations

import pandas as pd
from dagster import MetadataValue


def table_preview(frame: pd.DataFrame, rows: int = 10) -> MetadataValue:
    if frame.empty:
        return MetadataValue.md("_empty_")
    return MetadataValue.md(frame.head(rows).to_markdown(index=False))


def counts_table(counts: dict[str, int]) -> MetadataValue:
    return table_preview(pd.DataFrame({"what": list(counts), "count": list(counts.values())}), len(counts))


def gallery(images: list[tuple[str, str]]) -> MetadataValue:
    """images: (caption, data URI) pairs → a markdown gallery for the asset page."""
    cells = [f"![{caption}]({uri}) {caption}" for caption, uri in images]
    return MetadataValue.md("\n\n".join(cells) or "_no images_")


def dataset_metadata(version: dict) -> dict:
    return {"dataset": version["dataset"], "dataset_version": version["version"],
            "dvc_tracked": version["dvc_tracked"], "dataset_files": version["files"]}
