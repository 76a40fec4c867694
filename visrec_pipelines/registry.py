"""One dataset's rankers in the MLflow model registry: log and register them, read and move the
``champion`` alias, remember the champions (so a rollback restores the previous one), load one.

Every trained ranker is logged as a run and registered as a pyfunc that scores users from the
packed bundle alone (``recsys.bundle.RankerBundle``). ``promotion`` decides who is champion.
"""
from __future__ import annotations

import functools
import json
import math
import pickle
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import tracking

CHAMPION = "champion"
HISTORY_TAG = "champion_history"
EXPERIMENT = "visrec-rankers"
# the metrics the gate compares; also tags on each registered version (the UI and `visrec promote`)
GATE_METRICS = ("ndcg@20", "recall@20", "precision@20", "auc", "coverage@20", "cold_recall@20")


class NoPreviousChampion(RuntimeError):
    """A rollback with nothing to roll back to."""


def metric_key(name: str) -> str:
    return name.replace("@", "_at_")


def pyfunc_model():
    import mlflow.pyfunc

    class _RankerPyfunc(mlflow.pyfunc.PythonModel):
        """Input: a DataFrame with ``user_id`` (params: k). Output: user_id, rank, item_id, score."""

        def load_context(self, context):
            self.bundle = pickle.loads(Path(context.artifacts["bundle"]).read_bytes())

        def predict(self, context, model_input, params=None):
            return pyfunc_predict(self.bundle, model_input, params)

    return _RankerPyfunc()


DEFAULT_K = 20    # a registered version's answer length when the caller gives no ``k`` param


def pyfunc_predict(bundle, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
    """What a registered version answers: each user's best ``k`` (params, default DEFAULT_K)."""
    k = int((params or {}).get("k", DEFAULT_K))
    return bundle.recommend(model_input["user_id"].astype(str).tolist(), k=k)


class _RecordingPickler(pickle.Pickler):
    """A pickler that notes the top-level packages of what it pickles: the imports loading it needs."""

    def __init__(self, file):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.modules: set[str] = set()

    def reducer_override(self, obj):
        named = obj if isinstance(obj, type) or callable(obj) else type(obj)
        module = getattr(named, "__module__", None)
        if isinstance(module, str):
            self.modules.add(module.partition(".")[0])
        return NotImplemented             # pickled as usual

    def dump_recording(self, obj) -> set[str]:
        self.dump(obj)
        return self.modules


# what the pyfunc wrapper itself imports to load and answer
PYFUNC_PACKAGES = ("mlflow", "cloudpickle", "pandas", "numpy")


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    from importlib import metadata

    return metadata.packages_distributions()


def pinned_requirements(modules: set[str]) -> list[str]:
    """Pinned pip requirements of a logged ranker: the distributions of the packages its bundle's
    pickle names (this project, numpy, scipy; torch or lightgbm where a model holds them) and of
    the pyfunc wrapper. Handed to MLflow, which would otherwise infer the same list by loading the
    model in a subprocess: ~3 s a model, ten models a run."""
    from importlib import metadata

    names = _distributions()
    wanted = {d for package in (*PYFUNC_PACKAGES, __name__.partition(".")[0], *modules)
              for d in names.get(package, ())}
    pinned = []
    for dist in sorted(wanted, key=str.lower):
        try:
            pinned.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return pinned


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    dataset: str
    project_root: Path | None = None      # artifacts of a local store go to <root>/mlflow/artifacts

    @property
    def model_name(self) -> str:
        return f"visrec-ranker-{self.dataset}"

    def mlflow(self, experiment: str = EXPERIMENT):
        """mlflow, configured for this store and this dataset's ``experiment`` (one per dataset)."""
        artifacts = self.project_root / "mlflow" if self.project_root is not None else None
        return tracking.configure(self.tracking_uri, f"{experiment}-{self.dataset}", artifacts)

    def client(self):
        return self.mlflow().MlflowClient()

    def git_commit(self) -> str:
        return tracking.git_commit(self.project_root)

    # --- logging ---------------------------------------------------------------------------------
    def log_ranker(self, bundle, ranker_name: str, metrics: dict, params: dict, tags: dict,
                   register: bool = True) -> tuple[str, str | None]:
        """One MLflow run for one trained ranker; returns (run_id, registered version or None)."""
        mlflow = self.mlflow()
        with tempfile.TemporaryDirectory() as scratch, \
                mlflow.start_run(run_name=f"{ranker_name}-{self.dataset}") as run:
            mlflow.set_tags({**tags, "ranker": ranker_name, "dataset": self.dataset,
                             "git_commit": self.git_commit()})
            mlflow.log_params(params)
            mlflow.log_metrics({metric_key(k): float(v) for k, v in metrics.items()
                                if isinstance(v, (int, float)) and not math.isnan(v)})
            version = None
            if register:
                path = Path(scratch) / "bundle.pkl"
                with path.open("wb") as out:
                    modules = _RecordingPickler(out).dump_recording(bundle)
                example = pd.DataFrame({"user_id": [str(bundle.user_ids[0])]})
                # the signature from the bundle in hand, and no input example: with one, MLflow
                # unpickles the bundle again to predict it (to infer a signature, and then to
                # check the example would serve): a large shop's two_stage is gigabytes, per ranker
                signature = mlflow.models.infer_signature(example, pyfunc_predict(bundle, example),
                                                          params={"k": DEFAULT_K})   # callers may ask for k
                info = mlflow.pyfunc.log_model(name="model", python_model=pyfunc_model(),
                                               artifacts={"bundle": str(path)}, signature=signature,
                                               pip_requirements=pinned_requirements(modules),
                                               registered_model_name=self.model_name)
                version = str(info.registered_model_version)
                client = mlflow.MlflowClient()
                client.set_model_version_tag(self.model_name, version, "ranker", ranker_name)
                for key, value in metrics.items():
                    if key in GATE_METRICS:
                        client.set_model_version_tag(self.model_name, version, metric_key(key), f"{value:.6f}")
        return run.info.run_id, version

    # --- the champion ----------------------------------------------------------------------------
    def current_champion(self):
        """The champion's model version, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(self.model_name, CHAMPION)
        except MlflowException:
            return None

    def champion_reader(self) -> ChampionAlias:
        """A reader of the champion alias for a poller (serving checks it every few seconds)."""
        return ChampionAlias(self)

    def local_store_stamp(self) -> tuple | None:
        """What changes whenever a local sqlite store is written (its files' stats); None for a
        tracking server, which has no such stamp."""
        if not self.tracking_uri.startswith("sqlite:///"):
            return None
        database = Path(self.tracking_uri[len("sqlite:///"):])
        stamp = []
        for path in (database, database.with_name(database.name + "-wal")):
            try:
                stat = path.stat()
                stamp.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
            except FileNotFoundError:
                stamp.append(None)
        return tuple(stamp)

    def load_bundle(self, version: str):
        mlflow = self.mlflow()
        model = mlflow.pyfunc.load_model(f"models:/{self.model_name}/{version}")
        return model.unwrap_python_model().bundle

    def history(self) -> list[str]:
        """Champion versions, oldest first ([] before the first registration)."""
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client().get_registered_model(self.model_name).tags
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return []
            raise
        return json.loads(tags.get(HISTORY_TAG, "[]"))

    def set_champion(self, version: str) -> None:
        client = self.client()
        client.set_registered_model_alias(self.model_name, CHAMPION, version)
        client.set_registered_model_tag(self.model_name, HISTORY_TAG, json.dumps(self.history() + [str(version)]))

    def rollback(self) -> str:
        """Restore the previous champion; returns its version."""
        client = self.client()
        past = self.history()
        if len(past) < 2:
            raise NoPreviousChampion(f"{self.model_name} has no previous champion to roll back to "
                                     f"(champion history: {past}); a rollback needs two promotions")
        previous = past[-2]
        client.set_registered_model_alias(self.model_name, CHAMPION, previous)
        client.set_registered_model_tag(self.model_name, HISTORY_TAG, json.dumps(past[:-1]))
        client.set_model_version_tag(self.model_name, past[-1], "rolled_back", "true")
        return previous


class ChampionAlias:
    """The champion alias, read cheaply and often. ``current_champion`` sets mlflow up for the
    dataset's experiment and builds a client every call (~10 ms of CPU on sqlite); a poller doing
    that every few seconds stalls a server's event loop on the GIL. This keeps one client made from
    the store's URIs alone, and for a local sqlite store asks nothing while the store's files are
    unchanged since the last read (the stamp is taken before the read, so a write during it is
    seen at the next one). A file's mtime moves in clock ticks, so a write in the same tick as the
    read could leave the stamp as it was: an answer is only trusted once it was read at least
    STAMP_SETTLE_S after the store's last change."""

    STAMP_SETTLE_S = 1.0

    def __init__(self, registry: Registry):
        self.registry = registry
        self._client = None
        self._stamp: tuple | None = None
        self._settled = False
        self._version = None

    def read(self):
        """The champion's model version, or None."""
        from mlflow.exceptions import MlflowException

        from mlflow import MlflowClient

        stamp = self.registry.local_store_stamp()
        if stamp is not None and stamp == self._stamp and self._settled:
            return self._version
        read_at = time.time()
        if self._client is None:
            uri = self.registry.tracking_uri
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            version = self._client.get_model_version_by_alias(self.registry.model_name, CHAMPION)
        except MlflowException:
            version = None
        self._stamp, self._version = stamp, version
        changed_at = max((entry[0] / 1e9 for entry in stamp or () if entry is not None), default=0.0)
        self._settled = read_at - changed_at >= self.STAMP_SETTLE_S
        return version
