"""The H&M Personalized Fashion layout: ``articles.csv``, ``transactions_train.csv``, optionally
``customers.csv``, and ``images/0xx/0xxxxxxxxx.jpg`` (folder = the id's first three digits; a flat
``images/0xxxxxxxxx.jpg`` is taken too, as in samples of the catalogue).

Ids stay text: ``article_id`` is a 10-digit string whose leading zero is part of it (and of the
image's name). Transactions become ``purchase`` events (price and sales channel kept as columns;
two of one article bought on one day are exact repeats, merged by the pipeline into a quantity),
customers become users.csv, articles become items (title = prod_name, description = detail_desc,
every other column kept under its own name).
"""
from __future__ import annotations

from pathlib import Path

from ...times import contract_timestamps
from ..contract import Dataset
from ..tables import DatasetError, read_text_table
from .common import ImageCopies, finish_import, fresh_dataset, table_notes

ARTICLE_COLUMNS = {"article_id": "item_id", "prod_name": "title", "detail_desc": "description"}
TRANSACTION_COLUMNS = {"customer_id": "user_id", "article_id": "item_id", "t_dat": "timestamp"}
ARTICLE_ID = r"^\d{10}$"


def import_hm(source: Path, out_dir: Path, progress: bool = False) -> Dataset:
    source = Path(source)
    for name in ("articles.csv", "transactions_train.csv"):
        if not (source / name).is_file():
            raise DatasetError(f"{source} is not an H&M folder: {name} is missing "
                               f"(expected articles.csv, transactions_train.csv, customers.csv, images/)")
    articles_table = read_text_table(source / "articles.csv", ("article_id",))
    transactions_table = read_text_table(source / "transactions_train.csv", tuple(TRANSACTION_COLUMNS))
    customers_path = source / "customers.csv"
    customers_table = read_text_table(customers_path, ("customer_id",)) if customers_path.is_file() else None

    dataset = fresh_dataset(out_dir, (source,))
    images = ImageCopies(dataset, source / "images")
    article_ids = articles_table.frame["article_id"]
    image_paths = [images.take(a, _image_name(source / "images", a)) for a in article_ids]
    images.copy(progress)

    items = articles_table.frame.rename(columns=ARTICLE_COLUMNS).assign(image_path=image_paths)
    transactions = transactions_table.frame
    events = transactions.rename(columns=TRANSACTION_COLUMNS).assign(
        event_type="purchase", value=None,
        timestamp=contract_timestamps(transactions["t_dat"], "iso").to_numpy())
    users = customers_table.frame.rename(columns={"customer_id": "user_id"}) if customers_table else None

    notes = table_notes("articles", articles_table.notes) + table_notes("transactions", transactions_table.notes)
    if customers_table is None:
        notes.append("no customers.csv: no users table, so unknown customers are not checked")
    else:
        notes += table_notes("customers", customers_table.notes)
    odd = article_ids.dropna()[~article_ids.dropna().str.match(ARTICLE_ID)]
    if len(odd):
        notes.append(f"{len(odd):,} article ids are not 10-digit strings (e.g. {odd.iloc[0]!r}): H&M ids keep "
                     f"their leading zero; was the file re-saved by a spreadsheet?")
    counts = {"source_articles": len(articles_table.frame), "items": len(items),
              "source_transactions": len(transactions), "events": len(events),
              "source_customers": len(customers_table.frame) if customers_table else 0,
              "users": len(users) if users is not None else 0, **images.counts(),
              "unreadable_article_rows": articles_table.bad_rows,
              "unreadable_transaction_rows": transactions_table.bad_rows,
              "unreadable_customer_rows": customers_table.bad_rows if customers_table else 0}
    manifest = {"source": "hm", "source_path": str(source.resolve()), "counts": counts,
                "columns": {"items": ARTICLE_COLUMNS, "events": TRANSACTION_COLUMNS,
                            "users": {"customer_id": "user_id"}},
                "items_without_image": images.missing}
    return finish_import(dataset, items, events, users, manifest, notes)


def _image_name(images_dir: Path, article_id: str | None) -> str | None:
    """``0xx/0xxxxxxxxx.jpg``, or the flat ``0xxxxxxxxx.jpg`` when only that exists."""
    if article_id is None:
        return None
    nested, flat = f"{article_id[:3]}/{article_id}.jpg", f"{article_id}.jpg"
    return flat if not (images_dir / nested).is_file() and (images_dir / flat).is_file() else nested
