"""The MLflow gate: a worse model never becomes champion; a better one does; rollback restores."""
import time

import numpy as np
import pandas as pd
import pytest

from visrec_pipelines import promotion
from visrec_pipelines.recsys.base import Ranker
from visrec_pipelines.recsys.bundle import RankerBundle
from visrec_pipelines.recsys.metrics import evaluate
from visrec_pipelines.recsys.models.mostpop import MostPop
from visrec_pipelines.recsys.split import make_split


class AntiPop(Ranker):
    """Deliberately bad: recommends the least popular items."""
    name = "antipop"

    def fit(self, data, validation=None):
        self.seen = data.matrix()
        self.popularity = np.bincount(data.items, minlength=data.n_items).astype(np.float32)
        return self

    def score(self, users):
        return np.broadcast_to(-self.popularity, (len(users), len(self.popularity))).copy()


@pytest.fixture
def split():
    rng = np.random.default_rng(0)
    items = [f"i{k}" for k in range(30)]
    weights = np.linspace(3, 0.1, 30) / np.linspace(3, 0.1, 30).sum()   # a popularity skew
    rows = [{"user_id": f"u{u}", "item_id": items[rng.choice(30, p=weights)], "event_type": "click",
             "value": 1.0, "timestamp": pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(minutes=n)}
            for u in range(40) for n in range(12)]
    return make_split(pd.DataFrame(rows), items)


def register(registry, split, ranker):
    ranker.fit(split.train)
    metrics = evaluate(ranker, split)
    bundle = RankerBundle.from_training(ranker, split.train)
    run_id, version = registry.log_ranker(bundle, ranker.name, metrics, {}, {})
    return metrics, run_id, version


def gate(registry, split, metrics, run_id, version):
    return promotion.run_gate(registry, version, run_id, metrics, split, margin=0.01)[0]


def test_gate_and_rollback(settings, split):
    registry = settings.registry("gate")
    first = register(registry, split, MostPop())
    assert gate(registry, split, *first).promote                      # no champion yet
    assert str(registry.current_champion().version) == first[2]

    worse = register(registry, split, AntiPop())
    decision = gate(registry, split, *worse)
    assert not decision.promote and "does not beat" in decision.reasons[0]
    assert str(registry.current_champion().version) == first[2]   # a worse model never wins

    better = register(registry, split, MostPop())                       # equal is not better either
    assert not gate(registry, split, *better).promote
    review = registry.client().get_model_version(registry.model_name, better[2])
    assert "Paired bootstrap over users" in review.description and float(review.tags["gate_p_value"]) == 1.0

    bundle = registry.load_bundle(first[2])          # scores users with no training data
    recs = bundle.recommend(["u1", "stranger"], k=5)
    assert len(recs) == 10 and recs.loc[recs.user_id == "stranger", "known_user"].eq(False).all()


def test_rollback_restores_previous(settings, split):
    registry = settings.registry("rb")
    first = register(registry, split, AntiPop())
    assert gate(registry, split, *first).promote
    second = register(registry, split, MostPop())
    assert gate(registry, split, *second).promote
    assert str(registry.current_champion().version) == second[2]
    assert registry.rollback() == first[2]
    assert str(registry.current_champion().version) == first[2]
    with pytest.raises(RuntimeError, match="no previous champion"):
        registry.rollback()


def test_a_champion_that_cannot_be_loaded_blocks_nobody(settings, split, truncate_bundle):
    """A truncated champion artifact: the gate compares with the newest earlier champion that loads,
    and says so; with none left, the challenger is promoted, and the review says why."""
    registry = settings.registry("torn")
    first = register(registry, split, MostPop())
    assert gate(registry, split, *first).promote
    second = register(registry, split, MostPop())
    registry.set_champion(second[2])                       # e.g. promoted by hand
    truncate_bundle(registry, second[2])
    challenger = register(registry, split, AntiPop())
    decision, compared = promotion.run_gate(registry, challenger[2], challenger[1], challenger[0], split)
    assert compared == first[2] and not decision.promote
    assert decision.reasons[0].startswith(f"champion v{second[2]} cannot be loaded")
    assert decision.reasons[1] == f"compared with v{first[2]} instead"

    truncate_bundle(registry, first[2])
    decision, compared = promotion.run_gate(registry, challenger[2], challenger[1], challenger[0], split)
    assert decision.promote and compared is None
    assert "no earlier champion loads either" in decision.summary()
    assert str(registry.current_champion().version) == challenger[2]


def test_decide_rules():
    champion = {"ndcg@20": 0.10, "cold_recall@20": 0.05}
    assert promotion.decide({"ndcg@20": 0.12, "cold_recall@20": 0.05}, champion, margin=0.1).promote
    assert not promotion.decide({"ndcg@20": 0.105, "cold_recall@20": 0.05}, champion, margin=0.1).promote
    dropped = promotion.decide({"ndcg@20": 0.2, "cold_recall@20": 0.01}, champion, cold_tolerance=0.01)
    assert not dropped.promote and "Cold Recall" in dropped.reasons[-1]


def test_cli_rollback(isolated_env, split):
    from click.testing import CliRunner

    from visrec_pipelines.cli import main
    from visrec_pipelines.settings import Settings

    registry = Settings().registry("cli")      # the command line reads the environment
    first = register(registry, split, AntiPop())
    gate(registry, split, *first)
    second = register(registry, split, MostPop())
    gate(registry, split, *second)
    status = CliRunner().invoke(main, ["promote", "--dataset", "cli"])
    assert f"champion = version {second[2]}" in status.output
    rolled = CliRunner().invoke(main, ["promote", "--dataset", "cli", "--rollback"])
    assert rolled.exit_code == 0 and f"rolled back to version {first[2]}" in rolled.output
    again = CliRunner().invoke(main, ["promote", "--dataset", "cli", "--rollback"])   # nothing left
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert again.output.strip().splitlines()[-1] == (
        "Error: visrec-ranker-cli has no previous champion to roll back to (champion history: ['1']); "
        "a rollback needs two promotions")


def per_user(ndcg, cold=None, positives=None) -> pd.DataFrame:
    n = len(ndcg)
    return pd.DataFrame({"ndcg@20": ndcg, "recall@20": ndcg,
                         "cold_recall@20": np.full(n, np.nan) if cold is None else cold,
                         "train_positives": np.arange(n) + 5 if positives is None else positives},
                        index=pd.Index(np.arange(n), name="user"))


def metrics_of(frame: pd.DataFrame) -> dict:
    return {"ndcg@20": frame["ndcg@20"].mean(), "cold_recall@20": frame["cold_recall@20"].mean(),
            "per_user": frame}


def test_a_tiny_gain_on_few_users_is_not_promoted():
    """The mean is higher (it would pass the old rule) but one user of ten carries it: noise."""
    champion = per_user(np.random.default_rng(0).uniform(0.05, 0.3, 10))
    challenger = champion.copy()
    challenger.loc[3, "ndcg@20"] += 0.002
    decision = promotion.decide(metrics_of(challenger), metrics_of(champion), significance=0.05)
    assert not decision.promote and "not significant" in decision.summary()
    assert promotion.decide(metrics_of(challenger), metrics_of(champion), significance=None).promote
    overall = decision.segments.iloc[0]
    assert overall["segment"] == "all users" and overall["users"] == 10 and overall["p_value"] >= 0.05
    assert overall["low"] <= overall["delta"] <= overall["high"]


def test_a_clear_gain_over_many_users_is_promoted_with_its_interval_and_segments():
    rng = np.random.default_rng(1)
    champion = per_user(rng.uniform(0.05, 0.3, 300), cold=np.where(np.arange(300) % 3 == 0, 0.1, np.nan))
    challenger = champion.assign(**{"ndcg@20": champion["ndcg@20"] + rng.normal(0.02, 0.02, 300)})
    decision = promotion.decide(metrics_of(challenger), metrics_of(champion), significance=0.05)
    assert decision.promote and "is significant over 300 users" in decision.summary()
    segments = decision.segments.set_index("segment")
    assert 0 < segments.loc["all users", "low"] < 0.02 < segments.loc["all users", "high"] < 0.03
    assert segments.loc["all users", "p_value"] < 0.001
    cold = segments.loc["users with cold test items"]
    assert cold["users"] == 100 and cold["metric"] == "cold_recall@20" and cold["delta"] == 0.0
    light = next(s for s in segments.index if s.startswith("light users"))
    heavy = next(s for s in segments.index if s.startswith("heavy users"))
    assert segments.loc[light, "users"] + segments.loc[heavy, "users"] <= 300
    assert segments.loc[light, "delta"] > 0 and segments.loc[heavy, "delta"] > 0


def test_a_significant_gain_that_drops_cold_recall_is_still_refused():
    rng = np.random.default_rng(2)
    champion = per_user(rng.uniform(0.05, 0.3, 300), cold=np.full(300, 0.2))
    challenger = per_user(champion["ndcg@20"].to_numpy() + 0.05, cold=np.full(300, 0.05))
    decision = promotion.decide(metrics_of(challenger), metrics_of(champion), significance=0.05)
    assert not decision.promote and "Cold Recall" in decision.reasons[-1]


def test_a_registered_ranker_pins_what_loading_it_needs(settings, split):
    """The requirements are read from what the bundle pickles (MLflow's own inference loads each
    model in a subprocess): the project, the pyfunc's packages, and a model's own libraries."""
    import io
    from pathlib import Path

    import torch

    import mlflow
    from visrec_pipelines.registry import _RecordingPickler, pinned_requirements

    registry = settings.registry("pins")
    _, _, version = register(registry, split, MostPop())
    local = mlflow.artifacts.download_artifacts(f"models:/{registry.model_name}/{version}",
                                                tracking_uri=registry.tracking_uri)
    pinned = (Path(local) / "requirements.txt").read_text().split()
    names = {line.split("==")[0] for line in pinned}
    assert {"visrec", "mlflow", "numpy", "pandas", "scipy", "cloudpickle"} <= names and "torch" not in names
    assert all("==" in line for line in pinned)
    recorder = _RecordingPickler(io.BytesIO())
    with_torch = pinned_requirements(recorder.dump_recording({"weights": torch.zeros(3)}))
    assert any(line.startswith("torch==") for line in with_torch)


def test_the_champion_reader_follows_the_alias_and_asks_an_unchanged_local_store_nothing(settings, split,
                                                                                        monkeypatch):
    """Serving polls the alias every few seconds: the reader answers as ``current_champion`` does,
    and between writes to a local store it makes no query at all."""
    registry = settings.registry("poll")
    reader = registry.champion_reader()
    assert reader.read() is None                                   # nothing registered yet
    first = register(registry, split, MostPop())
    registry.set_champion(first[2])
    assert str(reader.read().version) == first[2]

    queries = []
    client = reader._client
    real = client.get_model_version_by_alias
    monkeypatch.setattr(client, "get_model_version_by_alias", lambda *a: queries.append(a) or real(*a))
    assert str(reader.read().version) == first[2] and len(queries) == 1   # the write was under 1 s ago
    time.sleep(reader.STAMP_SETTLE_S + 0.1)
    for _ in range(3):                                              # asked once more, then settled
        assert str(reader.read().version) == first[2]
    assert len(queries) == 2                                        # the store did not change
    queries.clear()

    second = register(registry, split, AntiPop())
    registry.set_champion(second[2])                               # any write to the store is seen
    assert str(reader.read().version) == second[2] == str(registry.current_champion().version)
    assert len(queries) == 1
    registry.rollback()
    assert str(reader.read().version) == first[2]


def test_registering_a_ranker_does_not_load_its_bundle_again(settings, split, monkeypatch):
    """The signature comes from the bundle in hand (MLflow would unpickle the bundle to predict
    the input example: a second copy of a large model in the evaluation step); it is the one
    MLflow infers, and the version loads and answers."""
    import mlflow
    from visrec_pipelines import registry as registry_module

    ranker = MostPop().fit(split.train)
    bundle = RankerBundle.from_training(ranker, split.train)
    example = pd.DataFrame({"user_id": [str(bundle.user_ids[0])]})
    expected = mlflow.models.infer_signature(example, registry_module.pyfunc_predict(bundle, example),
                                             params={"k": registry_module.DEFAULT_K})

    loads = []
    real_loads = registry_module.pickle.loads
    monkeypatch.setattr(registry_module.pickle, "loads", lambda data: loads.append(len(data)) or real_loads(data))
    registry = settings.registry("signature")
    _, version = registry.log_ranker(bundle, ranker.name, {}, {}, {})
    assert loads == []                                                 # registering unpickled nothing
    model_uri = f"models:/{registry.model_name}/{version}"
    mlflow.set_tracking_uri(registry.tracking_uri)
    assert mlflow.models.get_model_info(model_uri).signature == expected
    answer = mlflow.pyfunc.load_model(model_uri).predict(example, params={"k": 5})
    assert len(loads) == 1 and list(answer.columns) == list(expected.outputs.input_names()) and len(answer) == 5
