"""What the catalogue says about an item besides its image: its labels, its title's words and when it
became available. Together with the image features this is all a model knows about a COLD item
(one nobody has interacted with yet), so it is what lets cold items be recommended at all.

- attributes: one 0/1 column per catalogue label (demo category/colour/pattern, MovieLens genres:
  the label groups ``vision.heads`` finds), TF-IDF of the title's words (a word must occur in at
  least two titles: it has to generalise), and a one-hot release era (5-year bucket);
- available_since: unix seconds from an ``added_at`` / ``released_at`` / ``release_date`` column,
  else the year in a "Title (1995)" title (taken as 1 January: the earliest it can have been out),
  else NaN (unknown).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..times import unix_seconds  # unparsable or missing dates (NaT) → NaN: unknown, not dropped
from ..vision.heads import find_label_groups, targets

DATE_COLUMNS = ("added_at", "released_at", "release_date")
TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
MAX_TITLE_WORDS = 20000    # the most frequent; MovieLens-small has ~3k words in two titles or more
ERA_YEARS = 5


@dataclass
class ItemContent:
    attributes: sp.csr_matrix       # (n_items, a) float32, sparse (a title has a few words)
    names: list[str]                # one per attribute column
    available_since: np.ndarray     # (n_items,) float unix seconds, NaN when unknown


def item_content(catalogue: pd.DataFrame, item_ids) -> ItemContent:
    """Content rows aligned with ``item_ids`` (every id must be in ``catalogue``). Labels, words
    and eras are learned from the whole catalogue, so the columns do not depend on the ids asked."""
    items = catalogue.astype({"item_id": str}).drop_duplicates("item_id").reset_index(drop=True)
    rows = pd.Index(items["item_id"]).get_indexer(np.asarray(item_ids, dtype=str))
    if (rows < 0).any():
        missing = np.asarray(item_ids, dtype=str)[rows < 0]
        raise ValueError(f"{len(missing)} items have no catalogue row, e.g. {list(missing[:3])}")
    titles = items["title"].fillna("").astype(str).str.strip() if "title" in items else pd.Series([""] * len(items))

    blocks, names = [], []                   # each block a sparse (n_items, columns) matrix
    for group in find_label_groups(items.drop(columns=list(DATE_COLUMNS), errors="ignore")):
        blocks.append(sp.csr_matrix(targets(items, group)))
        names += [f"{group.column}={label}" for label in group.labels]
    words, vocabulary = _title_words(titles)
    blocks.append(words)
    names += [f"title:{w}" for w in vocabulary]
    available = _available_since(items, titles)
    era, eras = _era(available)
    blocks.append(sp.csr_matrix(era))
    names += eras
    attributes = sp.hstack(blocks, format="csr", dtype=np.float32)
    return ItemContent(attributes[rows], names, available[rows])


def _title_words(titles: pd.Series) -> tuple[sp.csr_matrix, list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    text = titles.str.replace(TITLE_YEAR, "", regex=True)
    vectorizer = TfidfVectorizer(min_df=2, max_features=MAX_TITLE_WORDS, sublinear_tf=True)
    try:
        matrix = vectorizer.fit_transform(text)
    except ValueError:                       # no word occurs twice (tiny or untitled catalogue)
        return sp.csr_matrix((len(titles), 0), dtype=np.float32), []
    return matrix.astype(np.float32), list(vectorizer.get_feature_names_out())


def _available_since(items: pd.DataFrame, titles: pd.Series) -> np.ndarray:
    for column in DATE_COLUMNS:
        if column in items:
            return unix_seconds(pd.to_datetime(items[column], utc=True, errors="coerce"))
    years = pd.to_numeric(titles.str.extract(TITLE_YEAR)[0], errors="coerce")
    return unix_seconds(pd.to_datetime(years.astype("Int64").astype(str) + "-01-01", format="%Y-%m-%d",
                                        utc=True, errors="coerce"))


def _era(available: np.ndarray) -> tuple[np.ndarray, list[str]]:
    known = np.isfinite(available)
    if not known.any():
        return np.zeros((len(available), 0), dtype=np.float32), []
    years = pd.to_datetime(available[known], unit="s").year.to_numpy()
    buckets = years // ERA_YEARS * ERA_YEARS
    labels = np.unique(buckets)
    out = np.zeros((len(available), len(labels)), dtype=np.float32)
    out[np.flatnonzero(known), np.searchsorted(labels, buckets)] = 1.0
    return out, [f"era={b}-{b + ERA_YEARS - 1}" for b in labels]
