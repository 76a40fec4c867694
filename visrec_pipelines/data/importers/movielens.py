"""MovieLens: ratings.csv + movies.csv + ``posters/{item_id}.jpg`` → the contract (ratings become
rating events; MovieLens stores unix seconds)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...times import contract_timestamps
from ..contract import Dataset
from ..tables import DatasetError, read_text_table
from .common import ImageCopies, finish_import, fresh_dataset, table_notes


def import_movielens(source: Path, out_dir: Path, progress: bool = False) -> Dataset:
    source = Path(source)
    for name in ("ratings.csv", "movies.csv"):
        if not (source / name).is_file():
            raise DatasetError(f"{source} is not a MovieLens folder: {name} is missing")
    movies_table = read_text_table(source / "movies.csv", ("item_id", "title", "genres"))
    ratings_table = read_text_table(source / "ratings.csv", ("user_id", "item_id", "rating", "timestamp"))
    movies, ratings = movies_table.frame, ratings_table.frame

    dataset = fresh_dataset(out_dir, (source,))
    images = ImageCopies(dataset, source / "posters")
    image_paths = [images.take(item_id, f"{item_id}.jpg" if item_id is not None else None)
                   for item_id in movies["item_id"]]
    images.copy(progress)

    items = pd.DataFrame({"item_id": movies["item_id"], "image_path": image_paths,
                          "title": movies["title"], "genres": movies["genres"]})
    events = pd.DataFrame({
        "user_id": ratings["user_id"], "item_id": ratings["item_id"], "event_type": "rating",
        "value": ratings["rating"], "timestamp": contract_timestamps(ratings["timestamp"], "unix_s").to_numpy(),
    })
    notes = table_notes("movies", movies_table.notes) + table_notes("ratings", ratings_table.notes)
    manifest = {"source": "movielens", "source_path": str(source.resolve()),
                "counts": {"source_movies": len(movies), "source_ratings": len(ratings),
                           "items": len(items), "events": len(events), **images.counts()},
                "items_without_image": images.missing}
    return finish_import(dataset, items, events, None, manifest, notes)
