"""A champion whose artifact is truncated on disk (registered for real, through the Registry): a fresh
server serves the newest version that loads at once, says why, retries the broken one when told to
(POST /admin/reload) and follows the alias when it is fixed. Nothing stalls for RETRY_FAILED_S."""
from fastapi.testclient import TestClient

from visrec_pipelines.serving.app import create_app
from visrec_pipelines.serving.manager import StateManager


def truncate(path) -> bytes:
    """Cut the file in half (a copy that died midway); returns what it held."""
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])
    return original


def test_a_truncated_champion_is_replaced_at_once_and_retried_on_demand(shop):
    dataset = shop.dataset("truncated-restart")
    versions = [shop.register(dataset, "bpr"), shop.register(dataset, "mostpop"), shop.register(dataset, "bpr")]
    artifact = shop.artifact_file(dataset, versions[-1])
    assert artifact.name == "bundle.pkl" and artifact.is_relative_to(shop.root / "mlflow")
    original = truncate(artifact)
    app = create_app(shop.settings(dataset, serving_encoder="none"), start_background=False)   # a fresh server
    with TestClient(app) as client:
        app.state.manager.reload()
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["champion_version"] == versions[1] and body["degraded"]       # the newest that loads
        assert f"version {versions[-1]}" in body["fallback"] and "champion history" in body["fallback"]
        assert body["last_error"]["version"] == versions[-1] and "truncated" in body["last_error"]["error"]
        user = shop.split.train.user_ids[0]
        assert client.get(f"/recommendations/{user}").json()["champion_version"] == versions[1]

        def attempts() -> int:
            return sum(e["version"] == versions[-1] for e in client.get("/status").json()["errors"])

        tried = attempts()
        assert not app.state.manager.reload()["swapped"] and attempts() == tried    # the watcher waits ...
        forced = client.post("/admin/reload").json()
        assert not forced["swapped"] and attempts() == tried + 1                    # ... an operator does not

        artifact.write_bytes(original)                        # the artifact store is repaired
        assert client.post("/admin/reload").json()["swapped"]
        ready = client.get("/readyz").json()
        assert ready["champion_version"] == versions[-1] and not ready["degraded"] and ready["fallback"] is None

        shop.registry(dataset).rollback()                     # the alias moves: followed at the next poll
        assert app.state.manager.reload()["swapped"]
        assert client.get("/readyz").json()["champion_version"] == versions[1]


def test_nothing_serving_retries_the_fallbacks_at_every_poll(shop):
    """Every version failed at start (the artifact store was away); when it is back the next poll
    serves, instead of waiting RETRY_FAILED_S because the alias's version failed once."""
    dataset = shop.dataset("truncated-nothing-yet")
    first, second = shop.register(dataset, "bpr"), shop.register(dataset, "mostpop")
    truncate(shop.artifact_file(dataset, second))
    older = shop.artifact_file(dataset, first)
    away = older.with_name("bundle.pkl.away")
    older.rename(away)
    manager = StateManager(shop.settings(dataset))
    manager.reload()
    assert not manager.state.ready and manager.status()["champion"] is None
    away.rename(older)
    manager.reload()                                          # an ordinary poll
    assert manager.state.ready and manager.state.champion.version == first
    assert f"version {second}" in manager.status()["fallback"]


def test_a_forced_reload_retries_a_failed_index_now(shop, app_factory, monkeypatch):
    """An index version that failed for a passing reason (the disk, the network) is not tried again
    by the watcher for a while; POST /admin/reload tries it at once."""
    from visrec_pipelines.index.exact import ExactIndex

    dataset = shop.dataset("index-retry")
    shop.register(dataset, "bpr")
    app = app_factory(dataset, serving_encoder="none")
    with TestClient(app) as client:
        index = shop.index
        ExactIndex(index.item_ids, index.vectors, index.categories, index.tags,
                   source="visrec_items_retry_2").save(shop.warehouse / dataset / "item_index.npz")
        load = ExactIndex.load

        def unavailable(path):
            raise OSError("the disk went away for a moment")

        monkeypatch.setattr(ExactIndex, "load", unavailable)
        assert not app.state.manager.reload()["swapped"]
        monkeypatch.setattr(ExactIndex, "load", load)
        assert not app.state.manager.reload()["swapped"]                  # the watcher waits ...
        assert client.post("/admin/reload").json()["swapped"]             # ... an operator does not
        assert client.get("/readyz").json()["index_version"] == "visrec_items_retry_2"
