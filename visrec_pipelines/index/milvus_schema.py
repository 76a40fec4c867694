"""The item collection's schema, row encoding, filter expressions and index parameters.

Tags are stored in one of two layouts, chosen by where the collection lives (``tag_array``):
- milvus-lite: one delimited VARCHAR (`|casual|red|`) filtered with `like "%|red|%"`. milvus-lite 3.2
  accepts `array_contains` but evaluates it row by row in Python (~80 µs a row: 0.8 s per query on
  10k items), while `like` runs as a vectorised Arrow kernel (a few ms).
- a Milvus server: an ARRAY of VARCHAR filtered with `array_contains`, evaluated natively. Servers
  before 2.4 reject infix `like` ("only prefix pattern match like ab% ... supported", seen on 2.3.5),
  and `array_contains` works on every server since 2.3, so no version check is needed.
Readers take the layout from the collection's schema (``tag_array_of``), so either kind of
collection is read correctly whoever built it.
Expression templates (`filter_params`) are not supported by milvus-lite, so literals are quoted here.
"""
from __future__ import annotations

import json

from pymilvus import DataType, MilvusClient

from visrec_pipelines.index.exact import as_tag_list

TAG_SEPARATOR = "|"
MAX_ID, MAX_CATEGORY, MAX_TAGS, MAX_TITLE = 256, 1024, 4096, 4096  # bytes, as Milvus counts
MAX_TAG_COUNT, MAX_TAG = 1024, 1024     # the ARRAY layout: tags per item, bytes per tag
VECTOR_FIELD = "vector"

# Build parameters per index type; metric is always inner product (vectors are unit length).
BUILD_PARAMS = {
    "FLAT": {},
    "HNSW": {"M": 16, "efConstruction": 200},
    "IVF_FLAT": {"nlist": 256},
    "IVF_SQ8": {"nlist": 256},
    "AUTOINDEX": {},
}


def search_params(index_type: str, k: int) -> dict:
    """Per-query knobs of an index type (a server may reject another type's keys). HNSW: ef >= k."""
    index_type = index_type.upper()
    params = ({"ef": max(128, 2 * k)} if index_type.startswith("HNSW")
              else {"nprobe": 32} if index_type.startswith("IVF") else {})
    return {"metric_type": "IP", "params": params}


def item_schema(dim: int, tag_array: bool = False):
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("item_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("category", DataType.VARCHAR, max_length=MAX_CATEGORY)
    if tag_array:
        schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_TAG_COUNT,
                         max_length=MAX_TAG)
    else:
        schema.add_field("tags", DataType.VARCHAR, max_length=MAX_TAGS)
    schema.add_field("title", DataType.VARCHAR, max_length=MAX_TITLE)
    return schema


def encode_tags(tags) -> str:
    tags = as_tag_list(tags)
    bad = [t for t in tags if TAG_SEPARATOR in t]
    if bad:
        raise ValueError(f"tags may not contain {TAG_SEPARATOR!r}: {bad}")
    return TAG_SEPARATOR + TAG_SEPARATOR.join(tags) + TAG_SEPARATOR if tags else ""


def decode_tags(stored) -> list[str]:
    """An item's tags as either layout stores them (a list from an ARRAY, text from a VARCHAR)."""
    if isinstance(stored, list):
        return [str(t) for t in stored]
    return [t for t in (stored or "").split(TAG_SEPARATOR) if t]


def tag_array_of(description: dict) -> bool:
    """Whether a collection (``MilvusClient.describe_collection``) stores tags as an ARRAY."""
    return any(f["name"] == "tags" and f["type"] == DataType.ARRAY for f in description["fields"])


def rows(item_ids, vectors, categories, tags, titles, tag_array: bool = False) -> list[dict]:
    encode = as_tag_list if tag_array else encode_tags
    return [{"item_id": str(i), VECTOR_FIELD: v, "category": _text(c), "tags": encode(t),
             "title": _text(ti)[:MAX_TITLE // 4]}  # UTF-8 needs at most 4 bytes a character
            for i, v, c, t, ti in zip(item_ids, vectors, categories, tags, titles)]


def _text(value) -> str:
    return value if isinstance(value, str) else ""  # None or a pandas NaN: no value


def quote(text: str) -> str:
    """A string literal for a Milvus filter expression (double quotes, backslash escapes)."""
    return json.dumps(text, ensure_ascii=False)


def filter_expression(category: str | None = None, tags=None, tag_array: bool = False) -> str:
    parts = [f"category == {quote(category)}"] if category is not None else []
    for tag in as_tag_list(tags):
        if tag_array:
            parts.append(f"array_contains(tags, {quote(tag)})")
            continue
        escaped = tag.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        parts.append(f"tags like {quote('%' + TAG_SEPARATOR + escaped + TAG_SEPARATOR + '%')}")
    return " and ".join(parts)
