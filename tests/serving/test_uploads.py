"""POST /search/image: the pictured item comes first; bad uploads get a 4xx with the reason."""
import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image


@pytest.fixture(scope="module")
def upload_client(shop, app_factory):
    app = app_factory("demo", max_upload_bytes=200_000, max_upload_pixels=4_000_000)
    app.state.images.start()
    assert app.state.images.wait(120), app.state.images.status()
    with TestClient(app) as client:
        yield client


def png(size, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 30, 30) if mode == "RGB" else 128).save(buffer, "PNG")
    return buffer.getvalue()


def post(client, data: bytes, name="upload.png", content_type="image/png", **params):
    return client.post("/search/image", params=params, files={"file": (name, data, content_type)})


def test_the_pictured_item_comes_first(upload_client, shop):
    items = shop.items()
    for row in (items.iloc[4], items.iloc[30]):
        data = (shop.assets / "demo" / row["image_path"]).read_bytes()
        body = post(upload_client, data, "photo.jpg", "image/jpeg", k=5).json()
        assert body["items"][0]["item_id"] == row["item_id"] and body["items"][0]["score"] > 0.99
        assert body["items"][0]["reason"].startswith("looks like your picture")
        filtered = post(upload_client, data, "photo.jpg", "image/jpeg", k=3, tags=row["colour"]).json()["items"]
        assert filtered and all(row["colour"] in i["tags"] for i in filtered)


def test_status_reports_the_encoder(upload_client):
    search = upload_client.get("/status").json()["image_search"]
    assert search["state"] == "ready" and search["encoder_id"].startswith("efficientnet-lite0:")


@pytest.mark.parametrize("make, content_type, status, reason", [
    (lambda: b"<html>not a picture</html>", "image/png", 415, "not_an_image"),
    (lambda: b"plain text", "text/plain", 415, "not an image"),
    (lambda: png((2100, 2100), "L"), "image/png", 413, "decompression_bomb"),   # 4.4 M pixels, tiny file
    (lambda: png((10, 10)), "image/png", 422, "too_small"),
    (lambda: png((300, 300))[:200], "image/png", 422, "truncated"),
    (lambda: b"", "image/png", 422, "zero_byte"),
    (lambda: png((64, 64), "I;16"), "image/png", 200, None),                    # 16-bit: normalised, fine
])
def test_bad_uploads_get_4xx_with_the_reason(upload_client, make, content_type, status, reason):
    response = post(upload_client, make(), content_type=content_type)
    assert response.status_code == status, response.text
    if reason:
        assert reason in response.json()["detail"]


def test_oversize_uploads_are_413_before_being_read(upload_client):
    big = b"\xff\xd8" + b"0" * 400_000
    declared = post(upload_client, big, "big.jpg", "image/jpeg")
    assert declared.status_code == 413 and "limit" in declared.json()["detail"]

    def chunks():                      # no Content-Length: cut off while streaming
        for _ in range(40):
            yield b"0" * 10_000

    streamed = upload_client.post("/search/image", content=chunks(),
                                  headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert streamed.status_code == 413
    just_over = post(upload_client, b"\xff\xd8" + b"0" * 200_100, "big.jpg", "image/jpeg")
    assert just_over.status_code == 413 and "file_too_large" in just_over.json()["detail"]


def test_malformed_upload_requests(upload_client):
    assert upload_client.post("/search/image").status_code == 422                       # no file
    assert upload_client.post("/search/image", json={"file": "x"}).status_code == 422
    assert upload_client.post("/search/image", files={"other": ("a.png", png((64, 64)), "image/png")}
                              ).status_code == 422
    assert upload_client.post("/search/image", content=b"--xyz\r\ngarbage",
                              headers={"content-type": "multipart/form-data; boundary=xyz"}).status_code in (400, 422)
    assert post(upload_client, png((64, 64)), k=0).status_code == 422


def test_search_without_encoder_is_503(shop, app_factory):
    with TestClient(app_factory("demo", serving_encoder="none")) as client:
        response = post(client, png((64, 64)))
        assert response.status_code == 503 and "disabled" in response.json()["detail"]
        assert client.get("/status").json()["image_search"] == {"state": "disabled"}
