"""Search by image finds the catalogue item the uploaded picture shows; bad uploads are refused.

The picture -> vector step is serving's (``serving.image_search.query_vector``, the one path the
API uses too); any index with ``search_vector`` answers the query."""
import io

import pytest

from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.index.exact import ExactIndex
from visrec_pipelines.serving.image_search import query_vector
from visrec_pipelines.vision.embedding_job import update_embeddings
from visrec_pipelines.vision.embedding_store import EmbeddingStore
from visrec_pipelines.vision.encoders import build_encoder
from visrec_pipelines.vision.images import ImageLimits, ImageRejected


def search_by_image(image, encoder, index, k=10, category=None, tags=None, limits=ImageLimits()):
    """[(item_id, score)] of the k catalogue items most like the picture."""
    return index.search_vector(query_vector(image, encoder, limits), k=k, category=category, tags=tags)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    ds = generate_demo(root / "demo", n_items=40, n_users=5, seed=2)
    items = ds.read_items()
    encoder = build_encoder()
    store = EmbeddingStore.for_encoder(root / "emb", encoder)
    frame = items.assign(sha256=[str(i) for i in range(len(items))])
    update_embeddings(store, encoder, frame, lambda p: str(ds.root / p))
    ids, vectors, _, _ = store.load()
    return ds, items, encoder, ExactIndex(ids, vectors, items.set_index("item_id").loc[ids, "category"])


def test_the_pictured_item_comes_first(catalogue):
    ds, items, encoder, index = catalogue
    row = items.iloc[7]
    upload = (ds.root / row["image_path"]).read_bytes()
    hits = search_by_image(upload, encoder, index, k=5)
    assert hits[0][0] == row["item_id"] and hits[0][1] > 0.99
    filtered = search_by_image(upload, encoder, index, k=5, category=row["category"])
    assert {items.set_index("item_id").loc[i, "category"] for i, _ in filtered} == {row["category"]}


def test_bad_uploads_are_refused_with_a_reason(catalogue):
    _, _, encoder, index = catalogue
    with pytest.raises(ImageRejected) as refused:
        search_by_image(b"<html>not a picture</html>", encoder, index)
    assert refused.value.reason == "not_an_image"
    with pytest.raises(ImageRejected) as bomb:
        from PIL import Image
        buffer = io.BytesIO()
        Image.new("L", (400, 400)).save(buffer, "PNG")
        search_by_image(buffer.getvalue(), encoder, index, limits=ImageLimits(max_pixels=10_000))
    assert bomb.value.reason == "decompression_bomb"
