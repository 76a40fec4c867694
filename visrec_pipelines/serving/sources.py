"""Where what serves comes from: the champion from the MLflow registry, the item index from the
snapshot or Milvus, and the rest of a state from the dataset and the warehouse.

At every check each source answers "what should serve now?" given what serves: the same object
(nothing changed, or the new version failed: it is reported, and while something serves it is not
retried for RETRY_FAILED_S unless the check is forced, as ``POST /admin/reload`` does), or a freshly
loaded, checked one. When the champion alias points at a version that cannot be loaded and nothing
serves, the champion source falls back to the last version that served here (``last_good.json``,
written atomically after every swap), then to earlier champions from the registry's history,
newest first; with nothing serving, every check tries that chain again. Failures go to
``report(component, version, error)``.
"""
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import write_atomically
from ..index.exact import ExactIndex
from ..settings import Settings
from ..times import iso_utc
from ..warehouse import Warehouse
from .catalogue import ItemCatalogue
from .champion import Champion, ChampionLoadError, load_champion
from .queries import IndexSnapshot, ServingState
from .row_maps import RowMaps
from .similar import SimilarItems

log = logging.getLogger("visrec.serving")
RETRY_FAILED_S = 600.0  # a version that failed to load is tried again after this (the failure may
                        # have been the artifact store, not the artifact)
Report = Callable[[str, str | None, str], None]


class IndexSource:
    """The item index: the snapshot the item_index asset writes (``index_source="snapshot"``), or
    the collection the dataset's Milvus alias points at, exported into memory (``"milvus"``)."""

    def __init__(self, settings: Settings, report: Report):
        self.settings, self.report = settings, report
        self.warehouse = settings.warehouse_for()
        self._failed: object = None          # signature of the version that failed to load

    def next(self, kept: IndexSnapshot | None, force: bool = False) -> tuple[IndexSnapshot | None, bool]:
        """(what should serve, whether it is new); ``force``: retry a version that failed."""
        try:
            signature = self.signature()
        except Exception as exc:
            self.report("index", None, f"cannot check the index: {type(exc).__name__}: {exc}")
            return kept, False
        if signature is None or (kept is not None and kept.signature == signature):
            return kept, False
        if signature == self._failed and kept is not None and not force:   # nothing serving: try again
            return kept, False
        try:
            exact, location = self.load()
            if len(exact) == 0:
                raise ValueError("the index holds no items")
            if not np.isfinite(exact.vectors).all():
                raise ValueError("the index holds non-finite vectors")
            similar = SimilarItems(exact, self.settings.neighbours, self.settings.neighbour_table_max_items)
        except Exception as exc:
            self._failed = signature
            self.report("index", str(signature), f"{type(exc).__name__}: {exc}")
            return kept, False
        return IndexSnapshot(similar, signature, time.time(), location), True

    def _milvus(self):
        from ..index.milvus_index import open_item_index

        return open_item_index(self.warehouse, uri=self.settings.milvus_uri, token=self.settings.milvus_token)

    def _snapshot_stat(self, path: Path | None = None):
        path = path or self.warehouse.item_index_snapshot
        if not path.is_file():
            return None
        stat = path.stat()
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _companions(self) -> tuple:
        """The files a state reads beside the index, written by other steps or after the snapshot
        (the similarity space right after it, text_search.npz by its own asset): when either
        changes, the state is built again, so it never keeps a stale one."""
        return tuple(self._snapshot_stat(p) for p in (self.warehouse.similarity_space,
                                                      self.warehouse.text_search_index))

    def signature(self):
        """What identifies the version on offer (None: there is none)."""
        if self.settings.index_source == "snapshot":
            snapshot = self._snapshot_stat()
            return None if snapshot is None else (snapshot, self._companions())
        with self._milvus() as milvus:   # open only for the check: milvus-lite allows one process
            collection = milvus.current_collection()
        # item_index updates small changes in place (same collection) and rewrites the snapshot
        # right after, so where the warehouse is visible the snapshot's stat tells those apart
        return None if collection is None else (collection, self._snapshot_stat(), self._companions())

    def load(self) -> tuple[ExactIndex, str]:
        """(the index, where it came from)."""
        if self.settings.index_source == "snapshot":
            path = self.warehouse.item_index_snapshot
            index = ExactIndex.load(path)
            if index.source == str(path):      # no version recorded: not the absolute path either
                index.source = path.name
            return index, f"snapshot {path.name}"
        with self._milvus() as milvus:
            if milvus.current_collection() is None:
                raise LookupError("no collection behind the dataset's Milvus alias")
            return ExactIndex.from_milvus(milvus), f"milvus {Path(milvus.uri).name}"


class LastGood:
    """``last_good.json``: the champion and index that last served here."""

    def __init__(self, path: Path, report: Report):
        self.path, self.report = path, report

    def write(self, state: ServingState) -> None:
        record = {"champion_version": state.champion.version, "ranker": state.champion.ranker_name,
                  "index_version": state.similar.version if state.similar else None,
                  "written_at": iso_utc(time.time(), "seconds"), "pid": os.getpid()}
        try:
            write_atomically(self.path, json.dumps(record))   # a kill leaves the old or the new record
        except OSError as exc:
            self.report("state", None, f"cannot write {self.path}: {exc}")

    def read(self) -> dict:
        """The record, or {} when there is none or it cannot be read (said to ``report``)."""
        if not self.path.is_file():
            return {}
        try:
            record = json.loads(self.path.read_text())
            if not isinstance(record, dict):
                raise ValueError(f"it holds a {type(record).__name__}, not a record")
            return record
        except (OSError, ValueError) as exc:
            self.report("state", None, f"{self.path.name} cannot be read ({type(exc).__name__}: {exc}); "
                                       "the champion history stands in for it")
            return {}


class ChampionSource:
    """The champion: the version the registry's ``champion`` alias points at, else a fallback.
    ``load_bundle`` (version -> RankerBundle) replaces ``Registry.load_bundle`` in tests."""

    def __init__(self, settings: Settings, report: Report, load_bundle: Callable[[str], object] | None = None):
        self.registry, self.report, self._load_bundle = settings.registry(), report, load_bundle
        self.alias = self.registry.champion_reader()
        self.last_good = LastGood(settings.warehouse_for().last_good, report)
        self.alias_version: str | None = None
        self.fallback: str | None = None     # why the served champion is not the alias's version
        self._failed: dict[str, float] = {}  # version -> when it failed: retried after a while

    def load(self, version: str) -> Champion:
        try:
            champion = load_champion(version, self._load_bundle or self.registry.load_bundle,
                                     self.registry.model_name)
        except ChampionLoadError:
            self._failed[version] = time.time()
            raise
        self._failed.pop(version, None)
        return champion

    def next(self, kept: Champion | None, force: bool = False) -> tuple[Champion | None, bool]:
        """(what should serve, whether it is new); ``force``: retry versions that failed now."""
        try:
            alias = self.alias.read()
        except Exception as exc:
            self.report("champion", None, f"cannot read the registry: {type(exc).__name__}: {exc}")
            return kept, False
        alias_version = str(alias.version) if alias is not None else None
        self.alias_version = alias_version
        if alias_version is None:
            return kept, False                      # no champion yet (or alias removed): keep serving
        if kept is not None and kept.version == alias_version:
            self.fallback = None
            return kept, False
        failed_at = self._failed.get(alias_version)
        if kept is not None and not force and failed_at is not None and \
                time.time() - failed_at < RETRY_FAILED_S:   # not again every poll while something serves
            return kept, False
        try:
            champion = self.load(alias_version)
            self.fallback = None
            return champion, True
        except ChampionLoadError as exc:
            self.report("champion", alias_version, str(exc))
            if kept is not None:
                self.fallback = (f"champion alias points at version {alias_version}, which cannot "
                                 f"serve; version {kept.version} keeps serving")
                return kept, False
        return self._fall_back(alias_version)   # nothing serves: the whole chain, at every check

    def _fall_back(self, failed: str) -> tuple[Champion | None, bool]:
        """Nothing serving and the alias's version is broken: the last version that served here,
        then earlier champions, newest first."""
        candidates = []
        last_good = self.last_good.read().get("champion_version")
        if last_good:
            candidates.append((str(last_good), "the last good one"))
        try:
            candidates += [(str(v), "the newest in the champion history that loads")
                           for v in reversed(self.registry.history())]
        except Exception as exc:
            self.report("champion", None, f"cannot read the champion history: {type(exc).__name__}: {exc}")
        tried = {failed}
        for version, which in candidates:
            if version in tried:
                continue
            tried.add(version)
            try:
                champion = self.load(version)
            except ChampionLoadError as exc:
                self.report("champion", version, str(exc))
                continue
            self.fallback = (f"champion alias points at version {failed}, which cannot serve; "
                             f"serving version {version} ({which}) instead")
            log.error(self.fallback)
            return champion, True
        return None, False


def read_state(settings: Settings, champion: Champion | None, index: IndexSnapshot | None) -> ServingState:
    """A new state around this champion and index: the catalogue from the dataset, the histories and
    the index's encoder from the warehouse. What it had to do without is in ``state.problems``."""
    similar = index.similar if index is not None else None
    catalogue = ItemCatalogue(settings.dataset_folder(), similar.index if similar else None)
    rows = RowMaps(catalogue, champion, similar)
    warehouse = settings.warehouse_for()
    problems: list[str] = [similar.problem] if similar is not None and similar.problem else []
    histories = read_histories(warehouse, catalogue, champion, rows, problems)
    return ServingState(settings, champion, index, catalogue, rows, histories,
                        read_index_encoder_id(warehouse, problems), tuple(problems),
                        read_text_search(warehouse, problems), read_similarity_space(warehouse, similar, problems))


def read_text_search(warehouse: Warehouse, problems: list[str]):
    """What GET /search/text searches (text_search_index asset), with the sentence model when the
    index has text vectors; words only if that model cannot load; None before the first build."""
    path = warehouse.text_search_index
    if not path.is_file():
        return None
    from ..vision.text_search import TextSearch  # imported only when there is one (sklearn)

    encoder = None
    try:
        if "text_vectors" in np.load(path, allow_pickle=False).files:
            from ..vision.text_embeddings import shared_text_encoder

            encoder = shared_text_encoder()
    except Exception as exc:
        problems.append(f"the sentence model cannot load ({type(exc).__name__}: {exc}); text search by words only")
    try:
        return TextSearch.load(path, encoder)
    except Exception as exc:
        problems.append(f"{path.name} cannot be read ({type(exc).__name__}: {exc}); no text search")
        return None


def read_similarity_space(warehouse: Warehouse, similar: SimilarItems | None, problems: list[str]):
    """How the index's vectors were made (item_index writes it beside the snapshot): search by image
    maps a picture through it. None when the index holds plain image vectors."""
    path = warehouse.similarity_space
    if similar is None or not path.is_file():
        return None
    from ..vision.similarity import SimilaritySpace  # imported only when there is one (torch)

    try:
        return SimilaritySpace.load(path)
    except Exception as exc:
        problems.append(f"{path.name} cannot be read ({type(exc).__name__}: {exc}); search by image "
                        "works only if the index holds plain image vectors")
        return None


def read_histories(warehouse: Warehouse, catalogue: ItemCatalogue, champion: Champion | None,
                   rows: RowMaps, problems: list[str] | None = None) -> dict[str, np.ndarray]:
    """user id -> catalogue rows the user interacted with, most recent first: the validated
    behaviour table from the warehouse when there is one, else the champion's train positives."""
    histories: dict[str, np.ndarray] = {}
    try:
        events = warehouse.read_table("behaviour_events", columns=["user_id", "item_id", "timestamp"])
        if events is not None:
            events = events.assign(row=events["item_id"].astype(str).map(catalogue.row)).dropna(subset=["row"])
            latest = (events.groupby(["user_id", "row"], sort=False)["timestamp"].max()
                      .reset_index().sort_values(["user_id", "timestamp"], ascending=[True, False]))
            for user, group in latest.groupby("user_id", sort=False):
                histories[str(user)] = group["row"].to_numpy(dtype=np.intp)
            return histories
    except Exception as exc:  # an unreadable table only costs the ordering
        problem = (f"behaviour_events.parquet cannot be read ({type(exc).__name__}: {exc}); histories "
                   "come from the champion's training data")
        log.warning(problem)
        histories = {}
        if problems is not None:
            problems.append(problem)
    if champion is not None and champion.seen is not None:
        for user_row, user_id in enumerate(champion.bundle.user_ids.tolist()):
            found = rows.champ_to_cat[champion.seen_items(user_row)]
            histories[user_id] = found[found >= 0]
    return histories


def read_index_encoder_id(warehouse: Warehouse, problems: list[str] | None = None) -> str | None:
    """The encoder the catalogue was embedded with (image_embeddings asset), if recorded."""
    try:
        table = warehouse.read_table("image_embeddings", columns=["encoder_id"])
    except Exception as exc:  # unreadable: the dimension check still applies
        if problems is not None:
            problems.append(f"image_embeddings.parquet cannot be read ({type(exc).__name__}: {exc}); "
                            "search by image checks only the vector dimension")
        return None
    # no table (a synthetic index, say): the dimension check still applies
    return str(table["encoder_id"].iloc[0]) if table is not None and len(table) else None
