"""The item index on a real Milvus server: the PyPI package ``milvus`` (2.3.5) runs Milvus standalone
as a child process, and ``Settings(milvus_uri=...)`` points the pipeline and serving at it — the same
code that uses a milvus-lite file by default.

pymilvus 3.0.2's MilvusClient talks to this server on its proxy port (``listen_port``, 19530 when
free). Its ``proxy.internalPort`` (19529) serves only Milvus' internal ProxyService, so a client
pointed there gets UNIMPLEMENTED for its first call (MilvusService/Connect).

The server never skips: without the ``milvus`` package (a dev dependency) or if the server does not
answer, these tests fail with its log.
"""
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance
from PIL import Image
from pymilvus import MilvusClient

from visrec_pipelines.data.contract import write_table
from visrec_pipelines.data.demo import generate_demo
from visrec_pipelines.index import ExactIndex, MilvusItemIndex, milvus_index, unit_rows
from visrec_pipelines.index.milvus_index import open_item_index
from visrec_pipelines.settings import Settings
from visrec_pipelines.vision import DEFAULT_ENCODER

pytestmark = [pytest.mark.slow, pytest.mark.milvus_server]

START_TIMEOUT_S = 120
DATASET = "srv-1"   # a server takes no "-" in names: the alias must be made valid
DIM = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base: Path):
    """A Milvus standalone process with its data, logs and binaries under ``base``."""
    from milvus import MilvusServer, MilvusServerConfig

    # Its embedded etcd listens on 2379/2380 whatever milvus.yaml says, unless it is given an etcd
    # config file (etcd.config.path, a key the package's template lacks): free ports, loopback only.
    client_port, peer_port = free_port(), free_port()
    etcd_config = base / "embed-etcd.yaml"
    base.mkdir(parents=True, exist_ok=True)
    etcd_config.write_text(
        f"listen-client-urls: http://127.0.0.1:{client_port}\nadvertise-client-urls: http://127.0.0.1:{client_port}\n"
        f"listen-peer-urls: http://127.0.0.1:{peer_port}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer_port}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer_port}\n")
    config = MilvusServerConfig()
    config.template_text = config.template_text.replace(
        "etcd:\n", "etcd:\n  config:\n    path: {{ etcd_config_path }}\n", 1)
    config.parse_template()
    config.set("etcd_config_path", str(etcd_config))
    server = MilvusServer(config, wait_for_started=False, etcd_port=client_port)
    server.set_base_dir(str(base))
    server.start()   # the other ports: the first free one from each default (19530, 9091, ...)
    return server


def wait_until_it_answers(server, uri: str, base: Path) -> None:
    """Until a client can list collections; the process exiting or the timeout fails with its log."""
    deadline, last = time.monotonic() + START_TIMEOUT_S, None
    while time.monotonic() < deadline:
        if server.server_proc.poll() is not None:
            last = f"the milvus process exited with code {server.server_proc.returncode}"
            break
        try:
            client = MilvusClient(uri=uri, timeout=5)
            try:
                client.list_collections()
                return
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 — not up yet: keep the last reason for the failure
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    logs = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                     for log in sorted((base / "logs").glob("*.log")))
    pytest.fail(f"the Milvus server at {uri} did not answer within {START_TIMEOUT_S}s ({last})\n{logs}")


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    base = tmp_path_factory.mktemp("milvus-server")
    server = start_server(base)
    try:
        uri = f"http://127.0.0.1:{server.listen_port}"
        wait_until_it_answers(server, uri, base)
        yield uri
    finally:
        server.stop()   # SIGTERM, SIGKILL after 1 s (its graceful stop can hang)
        shutil.rmtree(base / "bin", ignore_errors=True)   # ~250 MB of unpacked binaries; logs stay


@pytest.fixture(scope="module")
def shop(tmp_path_factory, milvus_uri):
    """A small demo shop whose Settings name the server; every location in a temporary folder."""
    root = tmp_path_factory.mktemp("milvus-shop")
    (root / "dagster_home").mkdir()
    dataset = generate_demo(root / "assets" / DATASET, n_items=40, n_users=12, seed=3)

    def settings(**overrides) -> Settings:
        """Explicit fields: a developer's VISREC_* / MILVUS_* variables cannot point the test elsewhere."""
        fields = dict(root=root, assets=root / "assets", warehouse=root / "warehouse",
                      dagster_home=root / "dagster_home", dataset=DATASET, mlflow_tracking_uri=None,
                      milvus_uri=milvus_uri, milvus_token="", index_source="snapshot", api_key=None,
                      encoder=DEFAULT_ENCODER, encoder_weights=None, detector_weights=None)
        return Settings(**{**fields, **overrides})

    return dataset, settings


@pytest.fixture(scope="module")
def refresh(shop):
    """Run the pipeline's catalogue_refresh job on the shop; its item_index materialisation metadata."""
    from visrec_pipelines.definitions import build_definitions
    from visrec_pipelines.defs.partitions import register_dataset

    _, settings = shop
    with DagsterInstance.ephemeral() as instance:
        def run(run_config=None) -> dict:
            job = build_definitions(settings()).resolve_job_def("catalogue_refresh")
            register_dataset(instance, DATASET)
            result = job.execute_in_process(run_config=run_config or {}, instance=instance, partition_key=DATASET)
            assert result.success
            event = instance.get_latest_materialization_event(AssetKey("item_index"))
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}

        yield run


@pytest.fixture(scope="module")
def built(shop, refresh):
    return refresh()


def server_index(settings: Settings) -> MilvusItemIndex:
    return open_item_index(settings.warehouse_for(), uri=settings.milvus_uri, token=settings.milvus_token)


def test_the_pipeline_builds_the_item_index_on_the_server(shop, built):
    dataset, settings = shop
    warehouse = settings().warehouse_for()
    assert built["mode"] == "full" and built["indexed"] == 40
    assert built["collection"].startswith(warehouse.milvus_alias()) and "-" not in built["collection"]
    assert not warehouse.milvus_lite_file().exists()          # nothing went to a milvus-lite file
    with server_index(settings()) as index:
        assert index.uri.startswith("http://127.0.0.1:")
        assert index.current_collection() == built["collection"] and index.count() == 40
        collection, ids, vectors, _, tags = index.export()
    snapshot = ExactIndex.load(warehouse.item_index_snapshot)
    assert collection == snapshot.source == built["version"]
    assert sorted(ids) == sorted(snapshot.item_ids.tolist()) == sorted(dataset.read_items()["item_id"])
    rows = [snapshot.row_of(i) for i in ids]
    np.testing.assert_allclose(vectors, snapshot.vectors[rows], atol=1e-6)
    assert tags == [snapshot.tags[r] for r in rows] and any(tags)


def test_a_catalogue_refresh_upserts_and_deletes_in_place_on_the_server(shop, built, refresh):
    dataset, settings = shop
    Image.new("RGB", (64, 64), "green").save(dataset.images_dir / "new1.jpg")
    items = dataset.read_items()
    removed = items["item_id"].iloc[1]
    new = {c: "" for c in items.columns} | {"item_id": "new1", "image_path": "images/new1.jpg", "title": "new"}
    write_table(pd.concat([items[items["item_id"] != removed], pd.DataFrame([new])], ignore_index=True),
                dataset.items_path)
    second = refresh({"ops": {"semantic_tags": {"config": {"only_items": ["new1"]}},
                              "item_index": {"config": {"only_items": ["new1"], "removed_items": [removed]}}}})
    assert (second["mode"], second["upserted"], second["deleted"], second["indexed"]) == ("incremental", 1, 1, 40)
    assert second["collection"] == built["collection"]                      # the same collection, in place
    snapshot = ExactIndex.load(settings().warehouse_for().item_index_snapshot)
    with server_index(settings()) as index:
        assert index.count() == 40
        with pytest.raises(KeyError):
            index.similar_items(removed)
        assert [i for i, _ in index.similar_items("new1", 5)] == [i for i, _ in snapshot.similar_items("new1", 5)]


def synthetic(n=120, seed=0):
    """Tags and categories a filter expression must quote right: %, _, quotes, backslashes, non-ASCII."""
    vectors = unit_rows(np.random.default_rng(seed).normal(size=(n, DIM)))
    ids = [f"item{i}" for i in range(n)]
    categories = [("shoes", 'say "hi"', "bäg\\s")[i % 3] for i in range(n)]
    tags = [[t for t, every in (("red", 2), ("50%_off", 5), ('o"k', 3), ("grün", 4)) if i % every == 0]
            for i in range(n)]
    return ids, vectors, categories, tags, [f"Item {i}" for i in range(n)]


def assert_same(got, want):
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_alias_swap_and_filtered_search_on_the_server(milvus_uri, monkeypatch):
    ids, vectors, categories, tags, titles = synthetic()
    exact = ExactIndex(ids, vectors, categories, tags)
    with MilvusItemIndex(milvus_uri, alias="visrec_test_filters") as index, \
            MilvusItemIndex(milvus_uri, alias="visrec_test_filters") as reader:   # e.g. serving
        first = index.build(ids, vectors, categories, tags, titles)
        assert reader.current_collection() == first
        for item in ("item0", "item1"):   # item0 has every tag, item1 none
            for category, must_have in [(None, None), ("shoes", None), ('say "hi"', None), ("bäg\\s", ["grün"]),
                                        (None, ["red"]), (None, ["50%_off", 'o"k']), ("shoes", ["red", "grün"])]:
                got = reader.similar_items(item, 5, category=category, tags=must_have)
                assert got
                assert_same(got, exact.similar_items(item, 5, category, must_have))
        assert reader.similar_items("item0", 5, tags=["50x_off"]) == []       # no wildcards in tags
        assert reader._tag_array                  # a server collection keeps tags in an ARRAY

        index.keep = 1                                   # the next build drops the previous collection
        swapped = unit_rows(vectors[::-1])
        second = index.build(ids, swapped, categories, tags, titles, index_type="HNSW")
        monkeypatch.setattr(milvus_index, "INDEX_TYPE_TTL_S", 0.0)
        assert reader.current_collection() == second and index.collections() == [second]
        assert_same(reader.similar_items("item3", 5, tags=["red"]),
                    ExactIndex(ids, swapped, categories, tags).similar_items("item3", 5, tags=["red"]))
        assert reader._index_type == "HNSW"


def test_serving_answers_similar_items_from_the_server(shop, built):
    """index_source=milvus: /similar answers from the collection behind the alias on the server
    (rebuilt here with other vectors, so the pipeline's snapshot cannot be what answers)."""
    from fastapi.testclient import TestClient

    from visrec_pipelines.serving.app import create_app

    _, settings = shop
    snapshot = ExactIndex.load(settings().warehouse_for().item_index_snapshot)
    ids = snapshot.item_ids.tolist()
    moved = ExactIndex(ids, snapshot.vectors[::-1], snapshot.categories, snapshot.tags)
    with server_index(settings()) as index:
        collection = index.build(ids, moved.vectors, moved.categories, moved.tags)
    app = create_app(settings(index_source="milvus", serving_encoder="none"), start_background=False)
    app.state.manager.reload()
    item = ids[3]
    with TestClient(app) as client:
        body = client.get(f"/items/{item}/similar", params={"k": 4}).json()
        assert body["index_version"] == collection
        assert [i["item_id"] for i in body["items"]] == [n for n, _ in moved.similar_items(item, 4)]
        assert [i["item_id"] for i in body["items"]] != [n for n, _ in snapshot.similar_items(item, 4)]
        tag = moved.tags[moved.row_of(item)][0]
        filtered = client.get(f"/items/{item}/similar", params={"k": 4, "tags": tag}).json()["items"]
        assert [i["item_id"] for i in filtered] == [n for n, _ in moved.similar_items(item, 4, tags=[tag])]
        status = client.get("/status").json()["index"]
        assert status["source"] == "milvus" and status["version"] == collection
