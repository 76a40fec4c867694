"""What serving knows about items: titles, images, tags, and their rows in the vector index.

Rows are the dataset's items.csv rows. Tags are the semantic tags the pipeline attached (carried by
the index snapshot, which the item_index asset writes from the semantic_tags table); an item the
index does not hold has no vector and no tags.
"""
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..data.contract import Dataset
from ..index.exact import ExactIndex
from ..paths import OutsideFolder

LABEL_FALLBACK = ("category", "genres")  # a category for cold-start diversity when tags have none


class ItemCatalogue:
    def __init__(self, dataset: Dataset, index: ExactIndex | None):
        items = dataset.read_items()
        items = items[items["item_id"].notna()].drop_duplicates("item_id").reset_index(drop=True)
        self.dataset = dataset
        self.item_ids = items["item_id"].astype(str).to_numpy()
        self.titles = [str(t) if t else str(i) for t, i in zip(items["title"], self.item_ids)]
        self.image_paths = [p if p else None for p in items["image_path"]]
        self.row = {item_id: r for r, item_id in enumerate(self.item_ids)}
        n = len(self.item_ids)
        self.vec_row = np.full(n, -1, dtype=np.intp)       # row in the index, -1 = not indexed
        self.tags: list[list[str]] = [[] for _ in range(n)]
        self.categories = [""] * n
        if index is not None:
            for index_row, item_id in enumerate(index.item_ids.tolist()):
                r = self.row.get(item_id)
                if r is not None:
                    self.vec_row[r] = index_row
                    self.tags[r] = index.tags[index_row]
                    self.categories[r] = str(index.categories[index_row])
        for column in LABEL_FALLBACK:
            if column in items.columns:
                for r, label in enumerate(items[column]):
                    if not self.categories[r] and label:
                        self.categories[r] = str(label).split("|")[0]
        self.tag_sets = [frozenset(t) for t in self.tags]
        groups: dict[str, list[int]] = {}
        for r, tags in enumerate(self.tags):
            for tag in set(tags):
                groups.setdefault(tag, []).append(r)
        self._rows_by_tag = {tag: np.asarray(rows, dtype=np.intp) for tag, rows in groups.items()}
        self._cards = [{"item_id": item_id, "title": self.titles[r], "tags": self.tags[r],
                        "category": self.categories[r] or None,
                        "image_url": f"/images/{quote(item_id, safe='')}" if self.image_paths[r] else None}
                       for r, item_id in enumerate(self.item_ids.tolist())]

    def __len__(self) -> int:
        return len(self.item_ids)

    def rows_with_tags(self, tags: list[str]) -> np.ndarray | None:
        """Sorted rows carrying every tag; None = no filter."""
        if not tags:
            return None
        sets = sorted((self._rows_by_tag.get(t, np.empty(0, np.intp)) for t in tags), key=len)
        rows = sets[0]
        for other in sets[1:]:
            rows = np.intersect1d(rows, other, assume_unique=True)
        return rows

    def tag_counts(self) -> list[tuple[str, int]]:
        return sorted(((t, len(r)) for t, r in self._rows_by_tag.items()), key=lambda x: (-x[1], x[0]))

    def image_file(self, row: int) -> Path | None:
        """The item's image, only if it lies inside the dataset folder (items.csv is data, not code)."""
        relative = self.image_paths[row]
        if not relative:
            return None
        try:
            path = self.dataset.image_file(relative)        # the one rule: no way out of the folder
        except OutsideFolder:
            return None
        return path if path.is_file() else None

    def card(self, row: int) -> dict:
        """The item as every response shows it (precomputed: responses copy it and add to it)."""
        return self._cards[row]

