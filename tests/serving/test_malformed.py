"""Malformed and oversize requests get a 4xx with a reason, never a 5xx."""
import random
import string
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def raw_client(shop, app_factory):
    dataset = shop.dataset("malformed")
    shop.register(dataset, "bpr")
    # server exceptions become 500 responses here instead of test errors: that is what we look for
    with TestClient(app_factory(dataset, serving_encoder="none"), raise_server_exceptions=False) as client:
        yield client


LONG = "x" * 300
CASES = [
    ("GET", "/recommendations/u0001?k=0", None, {}),
    ("GET", "/recommendations/u0001?k=101", None, {}),
    ("GET", "/recommendations/u0001?k=-3", None, {}),
    ("GET", "/recommendations/u0001?k=ten", None, {}),
    ("GET", "/recommendations/u0001?k=1e3", None, {}),
    ("GET", "/recommendations/u0001?" + "&".join(f"tags=t{i}" for i in range(25)), None, {}),
    ("GET", f"/recommendations/{LONG}", None, {}),
    ("GET", "/items/i00001/similar?k=0", None, {}),
    ("GET", "/items/i00001/similar?k=999999999999999999999", None, {}),
    ("GET", "/items/%00/similar", None, {}),
    ("GET", "/items/..%2F..%2Fetc%2Fpasswd/similar", None, {}),
    ("GET", f"/items/{LONG}/similar", None, {}),
    ("GET", "/users?limit=0", None, {}),
    ("GET", "/users/u0001/history?limit=100000", None, {}),
    ("GET", "/images/i00001?size=100000", None, {}),
    ("GET", "/no/such/endpoint", None, {}),
    ("DELETE", "/events", None, {}),
    ("PUT", "/recommendations/u0001", None, {}),
    ("POST", "/events", b"", {"content-type": "application/json"}),
    ("POST", "/events", b"{", {"content-type": "application/json"}),
    ("POST", "/events", b"\xff\xfe\x00garbage", {"content-type": "application/json"}),
    ("POST", "/events", b"event_id=1", {"content-type": "application/x-www-form-urlencoded"}),
    ("POST", "/events", b"{}", {"content-type": "text/plain"}),
    ("POST", "/events", b'{"event_id": "a"' + b" " * 2_000_000 + b"}", {"content-type": "application/json"}),
    ("POST", "/events", b"[" + b",".join([b'{"event_id": "e", "user_id": "u0001", "item_id": "i00001", '
                                          b'"event_type": "click"}'] * 1001) + b"]",
     {"content-type": "application/json"}),
    ("POST", "/events", b'{"event_id": "e", "user_id": "u0001", "item_id": "i00001", "event_type": "click", '
                        b'"timestamp": 12345}', {"content-type": "application/json"}),
    ("POST", "/events", b'{"event_id": "e", "user_id": "u0001", "item_id": "i00001", "event_type": "rating", '
                        b'"value": 1e400}', {"content-type": "application/json"}),
    ("POST", "/events", b'{"event_id": "e", "user_id": "u0001", "item_id": "i00001", "event_type": ["click"]}',
     {"content-type": "application/json"}),
    ("POST", "/search/image", b"not multipart", {"content-type": "image/png"}),
    ("POST", "/search/image", b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nxx",
     {"content-type": "multipart/form-data; boundary=b"}),
    ("POST", "/search/image", b"x" * 11_000_000, {"content-type": "multipart/form-data; boundary=b"}),
    ("POST", "/admin/reload?x=1", b"x" * 100_000, {"content-type": "application/json"}),
]


@pytest.mark.parametrize("method, url, body, headers", CASES, ids=[f"{m} {u[:50]}" for m, u, _, _ in CASES])
def test_malformed_request_is_a_4xx(raw_client, method, url, body, headers):
    response = raw_client.request(method, url, content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.json()["detail"]


def test_oversize_bodies_are_413(raw_client):
    json_bomb = b'{"event_id": "a"' + b" " * 2_000_000 + b"}"
    assert raw_client.post("/events", content=json_bomb, headers={"content-type": "application/json"}
                           ).status_code == 413
    assert raw_client.post("/search/image", content=b"x" * 11_000_000,
                           headers={"content-type": "multipart/form-data; boundary=b"}).status_code == 413


def test_random_garbage_never_gives_a_5xx(raw_client):
    rng = random.Random(1234)
    alphabet = string.printable + "éü✓\u2028"
    paths = ["/recommendations/{}", "/items/{}/similar", "/items/{}", "/users/{}/history", "/images/{}"]
    params = ["k", "tags", "limit", "size", "x"]
    for _ in range(300):
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        path = rng.choice(paths).format(quote(word, safe="") or "x")   # any bytes, percent-encoded
        query = {rng.choice(params): "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
                 for _ in range(rng.randint(0, 3))}
        response = raw_client.get(path, params=query)
        assert response.status_code < 500, (path, query, response.status_code, response.text[:300])
    for _ in range(100):
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        for url, kind in (("/events", "application/json"), ("/search/image", "multipart/form-data; boundary=zz")):
            response = raw_client.post(url, content=body, headers={"content-type": kind})
            assert 400 <= response.status_code < 500, (url, body, response.status_code, response.text[:300])
