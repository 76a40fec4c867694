"""Small shops in the exact layouts of public data sets (H&M Personalized Fashion, Amazon Reviews)."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from PIL import Image

# the real articles.csv header (see ../shared/datasets/fashion-catalogue/articles.csv)
HM_ARTICLE_COLUMNS = [
    "article_id", "product_code", "prod_name", "product_type_no", "product_type_name", "product_group_name",
    "graphical_appearance_no", "graphical_appearance_name", "colour_group_code", "colour_group_name",
    "perceived_colour_value_id", "perceived_colour_value_name", "perceived_colour_master_id",
    "perceived_colour_master_name", "department_no", "department_name", "index_code", "index_name",
    "index_group_no", "index_group_name", "section_no", "section_name", "garment_group_no",
    "garment_group_name", "detail_desc"]
HM_ARTICLES = ["0108775015", "0108775044", "0110065001", "0120129001", "0120129014"]
CUSTOMERS = [f"{k:x}" * 64 for k in (10, 11, 12)]          # 64-hex ids, as H&M's
STRANGER = "d" * 64                                        # buys, but is not in customers.csv
SHARED_DATASETS = Path(os.environ.get("VISREC_SHARED_DATASETS", Path(__file__).resolve().parents[3] / "shared"
                                      / "datasets"))


@pytest.fixture
def fashion_catalogue() -> Path:
    """The real H&M catalogue sample (articles.csv, images/); skipped without it, failed in CI."""
    folder = SHARED_DATASETS / "fashion-catalogue"
    if not (folder / "articles.csv").is_file():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"required in CI: {folder}")
        pytest.skip(f"no {folder}")
    return folder


@pytest.fixture
def hm_source(tmp_path):
    """5 articles (4 with images in images/0xx/), 3 customers, 20 transactions with date-only t_dat:
    8 on known articles (one exact repeat, one by a customer not in customers.csv) and 12 (60%) on
    articles missing from articles.csv."""
    root = tmp_path / "hm"
    rows = []
    for k, article in enumerate(HM_ARTICLES):
        row = {c: f"{c}-{k}" for c in HM_ARTICLE_COLUMNS}
        row.update(article_id=article, product_code=article[:7], prod_name=f"Strap top {k}",
                   product_type_name=["Vest top", "Bra"][k % 2], colour_group_name=["Black", "White"][k % 2],
                   detail_desc=f'Jersey top {k} with narrow, "adjustable" straps.')
        rows.append(row)
    root.mkdir()
    pd.DataFrame(rows, columns=HM_ARTICLE_COLUMNS).to_csv(root / "articles.csv", index=False)
    for article in HM_ARTICLES[:4]:
        (root / "images" / article[:3]).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 60), "black").save(root / "images" / article[:3] / f"{article}.jpg")
    pd.DataFrame({"customer_id": CUSTOMERS, "FN": [1, None, 1], "Active": [1, None, None],
                  "club_member_status": ["ACTIVE"] * 3, "fashion_news_frequency": ["NONE", "Regularly", "NONE"],
                  "age": [49, 25, 24], "postal_code": ["52043ee2162cf5aa7ee79974281641c6f11a68d276429a91f8ca"] * 3}
                 ).to_csv(root / "customers.csv", index=False)
    known = [(CUSTOMERS[0], HM_ARTICLES[0]), (CUSTOMERS[0], HM_ARTICLES[0]),      # exact repeat
             (CUSTOMERS[1], HM_ARTICLES[1]), (CUSTOMERS[1], HM_ARTICLES[2]), (CUSTOMERS[2], HM_ARTICLES[3]),
             (CUSTOMERS[2], HM_ARTICLES[4]), (CUSTOMERS[0], HM_ARTICLES[2]), (STRANGER, HM_ARTICLES[1])]
    unknown = [(CUSTOMERS[k % 3], f"0{900000000 + k}") for k in range(12)]
    pairs = known + unknown
    pd.DataFrame({"t_dat": ["2018-09-20"] * 2 + [f"2018-09-{21 + k % 9}" for k in range(len(pairs) - 2)],
                  "customer_id": [c for c, _ in pairs], "article_id": [a for _, a in pairs],
                  "price": ["0.0508305084745762"] * len(pairs), "sales_channel_id": [2] * len(pairs)}
                 ).to_csv(root / "transactions_train.csv", index=False)
    return SimpleNamespace(root=root, articles=HM_ARTICLES, article_columns=HM_ARTICLE_COLUMNS,
                           customers=CUSTOMERS, stranger=STRANGER)


@pytest.fixture
def amazon_source(tmp_path):
    """Gzipped JSON-lines reviews (one line broken, one blank, one review without unixReviewTime,
    one on a product without metadata) and metadata with a Python-literal (single-quoted) line."""
    root = tmp_path / "amazon"
    (root / "images").mkdir(parents=True)
    for asin in ("B0001", "B0002"):
        Image.new("RGB", (50, 50), "red").save(root / "images" / f"{asin}.jpg")
    reviews = [
        {"reviewerID": "A1", "asin": "B0001", "overall": 5.0, "unixReviewTime": 1252800000,
         "reviewTime": "09 13, 2009", "summary": "Love it", "reviewText": "Fits well, \"true\" to size.",
         "helpful": [2, 3]},
        {"reviewerID": "A2", "asin": "B0001", "overall": 3.0, "unixReviewTime": 1262304000},
        {"reviewerID": "A1", "asin": "B0002", "overall": 4.0, "reviewTime": "01 02, 2014"},
        {"reviewerID": "A3", "asin": "B0003", "overall": 1.0, "unixReviewTime": 1300000000},
        {"reviewerID": "A3", "asin": "B9999", "overall": 2.0, "unixReviewTime": 1300000001},
    ]
    lines = [json.dumps(r) for r in reviews[:2]] + ["", '{"reviewerID": "A4", "asin": "B0002", "overall'] + \
        [json.dumps(r) for r in reviews[2:]]
    with gzip.open(root / "reviews_Clothing.json.gz", "wt") as out:
        out.write("\n".join(lines) + "\n")
    meta = [
        json.dumps({"asin": "B0001", "title": "Canvas sneaker", "brand": "Acme", "price": 29.99,
                    "categories": [["Clothing, Shoes & Jewelry", "Women", "Shoes"], ["Clothing, Shoes & Jewelry",
                                                                                     "Shoes", "Sneakers"]],
                    "description": "A light sneaker.", "related": {"also_bought": ["B0002"]}}),
        json.dumps({"asin": "B0002", "title": "Rain coat", "category": ["Clothing", "Women", "Coats"],
                    "description": ["Waterproof.", "Hooded."]}),
        "{'asin': 'B0003', 'title': \"Men's belt\", 'categories': [['Clothing', 'Men', 'Belts']], "
        "'salesRank': {'Clothing': 1234}}",
    ]
    (root / "meta_Clothing.json").write_text("\n".join(meta) + "\n")
    return root
