"""The OpenAPI document says what the server really does, and a bounded schemathesis run keeps it so:
for every operation, generated valid and invalid requests against the in-process app must get no
5xx, a documented status code, a documented content type and a body matching the documented schema.
"""
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from visrec_pipelines.serving.manager import StateManager

MAX_EXAMPLES = 12      # per operation and mode: the whole run stays well under a minute on 2 cores
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CONFIG = schemathesis.Config.from_dict({
    "seed": 20250301,                          # the same requests in CI every time
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
})


LIMITS = {"max_upload_bytes": 200_000, "max_upload_pixels": 4_000_000}


def document() -> dict:
    """The serving app's OpenAPI document. Creating an app reads nothing, so this runs at import,
    as schemathesis's pytest integration needs (its fixture-based loader does not work on pytest 9)."""
    from visrec_pipelines.serving.app import create_app
    from visrec_pipelines.settings import Settings

    settings = Settings(root="/nonexistent", dataset="contract", mlflow_tracking_uri=None, api_key=None,
                        serving_encoder="none", **LIMITS)
    return create_app(settings, start_background=False).openapi()


schema = schemathesis.openapi.from_dict(document(), config=CONFIG)


@pytest.fixture(scope="module")
def contract_app(shop, app_factory):
    """The app the generated requests go to: a loaded shop with its encoder (search by image)."""
    dataset = shop.dataset("contract")
    shop.register(dataset, "bpr")
    app = app_factory(dataset, **LIMITS)
    assert app.openapi() == document()              # the requests are generated from this very document
    app.state.images.start()
    assert app.state.images.wait(120), app.state.images.status()
    return app


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_documented_contract(case, contract_app):
    case.call_and_validate(app=contract_app, checks=CHECKS)


def picture(shop) -> bytes:
    return (shop.assets / "demo" / shop.items()["image_path"].iloc[4]).read_bytes()


SUCCESSES = [   # (path, method, case data): generated ids rarely exist, so the 200 bodies are asked for here
    ("/items/{item_id}", "GET", {"path_parameters": {"item_id": "i00001"}}),
    ("/items/{item_id}/similar", "GET", {"path_parameters": {"item_id": "i00001"}, "query": {"tags": ["red"]}}),
    ("/images/{item_id}", "GET", {"path_parameters": {"item_id": "i00001"}, "query": {"size": 100}}),
    ("/recommendations/{user_id}", "GET", {"path_parameters": {"user_id": "u0001"}, "query": {"k": 3}}),
    ("/recommendations/{user_id}", "GET", {"path_parameters": {"user_id": "nobody"}, "query": {"tags": ["shoe"]}}),
    ("/users/{user_id}/history", "GET", {"path_parameters": {"user_id": "u0001"}}),
    ("/events", "POST", {"body": {"event_id": "contract-1", "user_id": "u0001", "item_id": "i00001",
                                  "event_type": "rating", "value": 4.0}, "media_type": "application/json"}),
    ("/events", "POST", {"body": {"event_id": "contract-1", "user_id": "u0001", "item_id": "i00002",
                                  "event_type": "click"}, "media_type": "application/json"}),         # 409
]


@pytest.mark.parametrize("path, method, data", SUCCESSES, ids=[f"{m} {p}" for p, m, _ in SUCCESSES])
def test_success_and_conflict_bodies_match_their_documents(contract_app, path, method, data):
    case = schema[path][method].Case(**data)
    response = case.call_and_validate(app=contract_app, checks=CHECKS)
    assert response.status_code in (200, 409)


def test_an_uploaded_picture_matches_its_document(contract_app, shop):
    case = schema["/search/image"]["POST"].Case(body={"file": picture(shop)}, media_type="multipart/form-data",
                                                query={"k": 3})
    response = case.call_and_validate(app=contract_app, checks=CHECKS)
    assert response.status_code == 200 and len(response.json()["items"]) == 3


def test_error_bodies_are_documented_as_they_are_returned(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def body(path, method, code):
        ref = spec["paths"][path][method]["responses"][str(code)]["content"]["application/json"]["schema"]["$ref"]
        return schemas[ref.rsplit("/", 1)[-1]]

    for path in ("/recommendations/{user_id}", "/items/{item_id}/similar", "/items/{item_id}", "/users",
                 "/users/{user_id}/history", "/images/{item_id}", "/events"):
        method = "post" if path == "/events" else "get"
        detail = body(path, method, 422)["properties"]["detail"]
        assert detail["type"] == "array", (path, detail)               # a list of {loc, msg, type}
    upload = body("/search/image", "post", 422)["properties"]["detail"]
    assert {s.get("type") for s in upload["anyOf"]} == {"string", "array"}   # a parameter or the picture
    for path in ("/events", "/search/image", "/admin/reload"):         # the body limit answers first
        responses = spec["paths"][path]["post"]["responses"]
        assert {"400", "413"} <= set(responses), path
    assert "missing" in body("/readyz", "get", 503)["properties"]
    assert "index" in body("/status", "get", 200)["properties"]


def test_the_422_bodies_are_lists_everywhere(client):
    for url in ("/recommendations/u0001?k=0", "/items/i00001/similar?tags=" + ",".join(f"t{i}" for i in range(21)),
                "/users?limit=0", "/images/i00001?size=1"):
        response = client.get(url)
        assert response.status_code == 422 and isinstance(response.json()["detail"], list), url
        assert {"loc", "msg", "type"} <= set(response.json()["detail"][0])
    assert isinstance(client.post("/events", json=[]).json()["detail"], list)
    refused = client.post("/events", content=b"{}", headers={"content-length": "two"})
    assert refused.status_code == 400 and refused.json() == {"detail": "Content-Length is not a number"}


def test_status_says_what_failed_without_paths(shop):
    """A load error whose exception names an absolute path (a missing artifact file) is shown with
    its exception type and the file's name only."""
    dataset = shop.dataset("contract-paths")
    first, second = shop.register(dataset, "bpr"), shop.register(dataset, "mostpop")
    shop.artifact_file(dataset, second).unlink()
    manager = StateManager(shop.settings(dataset))
    manager.reload()
    status = manager.status()
    assert status["champion"]["version"] == first
    error = status["last_error"]["error"] if status["last_error"]["version"] == second else \
        next(e["error"] for e in status["errors"] if e["version"] == second)
    assert "FileNotFoundError" in error and "bundle.pkl" in error and "\n" not in error
    text = json.dumps(status)
    assert str(shop.root) not in text and "/tmp/" not in text
    assert status["index"]["location"] == "snapshot item_index.npz"
