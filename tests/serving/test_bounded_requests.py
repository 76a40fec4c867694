"""Each request's CPU and memory are bounded by its parameters' limits: tags (counted after the
commas are split, each of bounded length, de-duplicated in linear time), thumbnails (sizes snapped
to buckets, decoded small, cached within a byte budget, few decodes at once), uploads (bytes and
pixels checked before decoding), events per request."""
import io
import threading

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from visrec_pipelines.serving.api.params import MAX_TAG_LENGTH, MAX_TAGS, TAGS, InvalidParameter

HOT = ("/recommendations/u0001", "/items/i00001/similar")


@pytest.fixture(scope="module")
def bounded(shop, app_factory):
    dataset = shop.dataset("bounded")
    shop.register(dataset, "bpr")
    with TestClient(app_factory(dataset, serving_encoder="none"), raise_server_exceptions=False) as client:
        yield dataset, client


# --- tags ------------------------------------------------------------------------------------------
def many_tags(n: int) -> str:
    return ",".join(f"t{i}" for i in range(n))


@pytest.mark.parametrize("query", [
    {"tags": many_tags(8_000)},                      # one parameter, 8,000 tags (httpx caps the URL)
    {"tags": many_tags(MAX_TAGS + 1)},                             # one over, after the commas
    [("tags", many_tags(11)), ("tags", ",".join(f"u{i}" for i in range(11)))],   # over repeats
    {"tags": "x" * (MAX_TAG_LENGTH + 1)},                          # one tag too long
])
def test_the_tag_limit_counts_tags_after_splitting_on_every_route(bounded, query):
    _, client = bounded
    for path in HOT:
        response = client.get(path, params=query)
        assert response.status_code == 422, (path, response.text[:200])
        assert response.json()["detail"][0]["loc"] == ["query", "tags"]
    upload = client.post("/search/image", params=query, files={"file": ("a.png", b"x", "image/png")})
    assert upload.status_code == 422 and isinstance(upload.json()["detail"], list), upload.text[:200]


def test_tags_at_the_limit_are_accepted(bounded):
    _, client = bounded
    tags = ",".join(["red"] * 3 + [f"t{i}" for i in range(MAX_TAGS - 1)])      # 20 distinct
    for path in HOT:
        response = client.get(path, params={"tags": tags})
        assert response.status_code == 200 and len(response.json()["tags"]) == MAX_TAGS


class CountingStr(str):
    splits = 0

    def split(self, *args, **kwargs):
        CountingStr.splits += 1
        return super().split(*args, **kwargs)


def test_an_oversized_tags_value_is_refused_before_it_is_split():
    CountingStr.splits = 0
    with pytest.raises(InvalidParameter):
        TAGS.parse([CountingStr(many_tags(12_000))])
    assert CountingStr.splits == 0
    assert TAGS.max_raw == MAX_TAGS * (MAX_TAG_LENGTH + 1)   # the most one value can carry


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("ab, \t"), max_size=40), max_size=25))
def test_tag_parsing_matches_its_spec(raw):
    """Accepted: at most MAX_TAGS distinct non-empty stripped tags, first-seen order; else refused."""
    expected = list(dict.fromkeys(t.strip() for v in raw for t in v.split(",") if t.strip()))
    too_many = len(raw) > MAX_TAGS or len(expected) > MAX_TAGS or any(len(v) > TAGS.max_raw for v in raw)
    try:
        got = TAGS.parse(raw)
    except InvalidParameter:
        assert too_many
    else:
        assert not too_many and got == expected


# --- thumbnails --------------------------------------------------------------------------------------
def big_picture(path, size, fmt):
    Image.new("RGB", size, (30, 120, 200)).save(path, fmt)


@pytest.fixture(scope="module")
def pictures(shop, app_factory):
    """A shop whose first two items have big pictures: a 3000x2000 JPEG and a 1500x1000 PNG."""
    dataset = shop.dataset("thumbnails")
    shop.register(dataset, "bpr")
    items = shop.items(dataset).set_index("item_id")["image_path"]
    big_picture(shop.assets / dataset / items["i00000"], (3000, 2000), "JPEG")
    big_picture(shop.assets / dataset / items["i00001"], (1500, 1000), "PNG")
    app = app_factory(dataset, serving_encoder="none")
    with TestClient(app) as client:
        yield app, client


def test_thumbnail_sizes_snap_to_buckets_and_the_cache_stays_in_budget(pictures):
    app, client = pictures
    thumbnails = app.state.thumbnails
    thumbnails.clear()
    for size in range(16, 513):
        for item in ("i00000", "i00001", "i00002"):
            response = client.get(f"/images/{item}", params={"size": size})
            assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
            width, height = Image.open(io.BytesIO(response.content)).size
            assert max(width, height) <= min(b for b in (64, 128, 256, 512) if b >= size)
    stats = client.get("/status").json()["thumbnails"]
    assert stats["decodes"] <= 3 * 4                        # one per (picture, bucket)
    assert stats["cache_bytes"] <= stats["budget_bytes"]
    thumbnails.clear()
    for size in (512, 64):
        assert client.get("/images/i00000", params={"size": size}).status_code == 200
    assert thumbnails.stats()["peak_decoded_pixels"] <= 3000 * 2000 // 16   # the JPEG decoded shrunk


def test_the_thumbnail_cache_keeps_to_its_byte_budget(tmp_path):
    from visrec_pipelines.serving.thumbnails import Thumbnails

    paths = []
    for n in range(12):
        path = tmp_path / f"p{n}.jpg"
        Image.effect_noise((600, 600), 60 + n).convert("RGB").save(path, "JPEG")
        paths.append(path)
    thumbnails = Thumbnails(budget_bytes=150_000, max_decodes=2)
    for path in paths:
        for size in (64, 128, 256, 512, 300, 100):
            assert thumbnails.get(path, size)
            assert thumbnails.stats()["cache_bytes"] <= 150_000
    stats = thumbnails.stats()
    assert stats["entries"] < 12 * 4 and stats["decodes"] <= 12 * 6       # evicted, not grown
    roomy = Thumbnails(budget_bytes=10**8, max_decodes=2)
    for path in paths:
        for size in (64, 128, 256, 512, 300, 100, 16, 65, 511):
            assert roomy.get(path, size)
    assert roomy.stats()["decodes"] == roomy.stats()["entries"] == 12 * 4   # one per bucket


def test_concurrent_decodes_are_bounded(tmp_path, monkeypatch):
    from visrec_pipelines.serving import thumbnails as module

    paths = []
    for n in range(16):
        path = tmp_path / f"q{n}.png"
        Image.new("RGB", (400, 300), (n * 10, 0, 0)).save(path, "PNG")
        paths.append(path)
    thumbnails = module.Thumbnails(budget_bytes=10**6, max_decodes=2)
    decode, barrier = module.decode_shrunk, threading.Barrier(2, timeout=5)

    def slow_decode(*args):
        try:
            barrier.wait()     # two decodes meet here: the bound is reached, not just respected
        except threading.BrokenBarrierError:
            pass
        return decode(*args)

    monkeypatch.setattr(module, "decode_shrunk", slow_decode)
    threads = [threading.Thread(target=thumbnails.get, args=(p, 128)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stats = thumbnails.stats()
    assert stats["decodes"] == 16 and stats["peak_decodes"] == 2 == stats["max_decodes"]


# --- uploads and events -----------------------------------------------------------------------------
def test_uploads_are_refused_before_decoding(app_factory, monkeypatch):
    """A decompression bomb (tiny file, huge header) and an oversized body never reach a decoder."""
    app = app_factory("demo", max_upload_bytes=200_000, max_upload_pixels=4_000_000)
    app.state.images.start()
    assert app.state.images.wait(120), app.state.images.status()
    bomb = io.BytesIO()
    Image.new("1", (8000, 8000)).save(bomb, "PNG")           # 64 M pixels in a few kB
    assert len(bomb.getvalue()) < 100_000
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self.size))
    with TestClient(app) as client:
        refused = client.post("/search/image", files={"file": ("bomb.png", bomb.getvalue(), "image/png")})
        assert refused.status_code == 413 and "decompression_bomb" in refused.json()["detail"]
        oversized = client.post("/search/image", content=b"0" * 11 * 2**20,
                                headers={"content-type": "multipart/form-data; boundary=b"})
        assert oversized.status_code == 413
    assert loads == []


def test_events_per_request_are_bounded(bounded, monkeypatch):
    from visrec_pipelines.data.landing import EventLanding

    _, client = bounded
    stored = []
    monkeypatch.setattr(EventLanding, "store", lambda self, events: stored.append(len(events)))
    batch = [{"event_id": f"e{i}", "user_id": "u0001", "item_id": "i00001", "event_type": "click"}
             for i in range(1001)]
    assert client.post("/events", json=batch).status_code == 413 and stored == []
