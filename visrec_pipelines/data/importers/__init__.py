"""Importers: turn outside data into the dataset contract. They never drop a row.

Validation is the pipeline's job (``behaviour_events``, ``raw_images``); an importer only renames,
converts time stamps to the contract's ISO-8601 UTC, copies images and reports (``import_report``:
what the pipeline will set aside). Rows that look wrong are kept verbatim so the pipeline can
quarantine them with a reason and every source row stays accounted for in dataset.json's counts.

- ``movielens``: ratings.csv, movies.csv, posters/
- ``folder``: a shop's own items/events/users tables (CSV or Parquet) with a column mapping
- ``hm``: the H&M Personalized Fashion layout
- ``amazon``: the Amazon Reviews layout (JSON lines, gzipped or not)
"""
from .amazon import import_amazon
from .common import safe_image_file
from .folder import import_folder
from .hm import import_hm
from .mapping import ColumnMapping
from .movielens import import_movielens

__all__ = ["ColumnMapping", "import_amazon", "import_folder", "import_hm", "import_movielens", "safe_image_file"]
