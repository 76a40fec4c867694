"""What the server serves, and how a new champion or index replaces it without downtime.

``ServingState`` is immutable once built: the champion, the item catalogue, the visual index and
everything precomputed from them. A request reads ``StateManager.state`` once and works on that
object only, so a swap is one reference assignment: in-flight requests finish on the old state,
new ones see the new state, and none sees a mixture.

``StateManager.reload`` checks the MLflow ``champion`` alias and the index version, loads whatever
changed beside the running state, smoke-tests it, and swaps only if everything loaded. A version
that fails is reported (``status()``) and not retried until the alias points elsewhere; the
previous champion keeps serving. At start-up, when the alias points at a version that cannot be
loaded, the server falls back to the last version that served here (``last_good.json``, written
atomically after every swap), then to earlier champions from the registry's history.
"""
import gc
import json
import logging
import os
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_atomically
from ..data.contract import Dataset
from ..index.exact import ExactIndex, as_tag_list
from . import reasons
from .catalogue import ItemCatalogue
from .champion import Champion, ChampionLoadError, load_champion
from .settings import ServingSettings
from .similar import SimilarItems, fast_top_k

log = logging.getLogger("visrec.serving")
RETRY_FAILED_S = 600.0  # a version that failed to load is tried again after this (the failure may
                        # have been the artifact store, not the artifact)


class NotReady(RuntimeError):
    """The component a request needs (champion, index, encoder) is not loaded yet."""


class NotFound(KeyError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class IndexSnapshot:
    similar: SimilarItems
    signature: object          # what identifies this version on disk / in Milvus
    loaded_at: float
    location: str


TOP_CACHED = 200  # best items kept per user: k <= 100 always, and tag filters usually, come from these
UNKNOWN_TWIN = -2  # look-alike not searched yet (-1: none, the item or the history has no vector)


@dataclass
class _UserContext:
    top_rows: np.ndarray         # champion item rows, best first, exclusions applied
    top_cat: list                # ... as catalogue rows
    top_values: list             # ... their scores
    twins: list                  # per top row: the recent history item (catalogue row) it looks most like
    twin_similarity: list        # ... and the cosine of their image vectors (filled in as shown)
    excluded: np.ndarray         # champion item rows never recommended to this user
    complete: bool               # top_rows holds every recommendable item
    tag_ranks: dict              # tags of the recent history by frequency, for "shares ... with your history"
    recent_rows: np.ndarray      # catalogue rows of the recent history


class ServingState:
    """Champion + catalogue + index, and the queries the API answers from them (read-only)."""

    def __init__(self, settings: ServingSettings, champion: Champion | None, index: IndexSnapshot | None):
        self.settings, self.champion, self.index = settings, champion, index
        self.similar = index.similar if index is not None else None
        self.dataset = Dataset(settings.dataset_root)
        self.catalogue = ItemCatalogue(self.dataset, self.similar.index if self.similar else None)
        cat = self.catalogue
        self.built_at = time.time()
        self.index_to_cat = np.full(len(self.similar) if self.similar else 0, -1, dtype=np.intp)
        self.index_to_cat[cat.vec_row[cat.vec_row >= 0]] = np.flatnonzero(cat.vec_row >= 0)
        popularity = np.zeros(len(cat), dtype=np.float32)
        if champion is not None:
            self.champ_to_cat = np.asarray([cat.row.get(i, -1) for i in champion.bundle.item_ids.tolist()],
                                           dtype=np.intp)
            self.cat_to_champ = np.full(len(cat), -1, dtype=np.intp)
            known = self.champ_to_cat >= 0
            self.cat_to_champ[self.champ_to_cat[known]] = np.flatnonzero(known)
            # items the champion knows but the catalogue does not (no title, no image) never show
            self.unknown_bias = np.where(known, 0.0, -np.inf).astype(np.float32)
            popularity[self.champ_to_cat[known]] = champion.popularity[known]
        self.popularity = popularity
        self.cold_rows, self.cold_ranks = reasons.diverse_popular_order(popularity, cat.categories)
        self.histories = self._histories()
        self._context = lru_cache(maxsize=settings.user_cache_size)(self._user_context)
        self._mask = lru_cache(maxsize=256)(self._champion_mask)
        self._candidates = lru_cache(maxsize=256)(self._champion_candidates)
        self._index_masks = lru_cache(maxsize=256)(self._index_mask)
        self.index_encoder_id = self._index_encoder_id()

    # --- readiness ------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.champion is not None and self.similar is not None

    def _need_champion(self) -> Champion:
        if self.champion is None:
            raise NotReady("no champion ranker is loaded yet (see /status)")
        return self.champion

    def _need_index(self) -> SimilarItems:
        if self.similar is None:
            raise NotReady("no item index is loaded yet (see /status)")
        return self.similar

    # --- histories ------------------------------------------------------------------------------
    def _histories(self) -> dict[str, np.ndarray]:
        """user id -> catalogue rows the user interacted with, most recent first: the validated
        behaviour table from the warehouse when there is one, else the champion's train positives."""
        cat, histories = self.catalogue, {}
        events_path = self.settings.dataset_warehouse / "behaviour_events.parquet"
        if events_path.is_file():
            try:
                events = pd.read_parquet(events_path, columns=["user_id", "item_id", "timestamp"])
                rows = events["item_id"].astype(str).map(cat.row)
                events = events.assign(row=rows).dropna(subset=["row"])
                latest = (events.groupby(["user_id", "row"], sort=False)["timestamp"].max()
                          .reset_index().sort_values(["user_id", "timestamp"], ascending=[True, False]))
                for user, group in latest.groupby("user_id", sort=False):
                    histories[str(user)] = group["row"].to_numpy(dtype=np.intp)
                return histories
            except Exception as exc:  # an unreadable table only costs the ordering
                log.warning("behaviour_events unreadable (%s); history from the champion", exc)
        champion = self.champion
        if champion is not None and champion.seen is not None:
            for user_row, user_id in enumerate(champion.bundle.user_ids.tolist()):
                rows = self.champ_to_cat[champion.seen_items(user_row)]
                histories[user_id] = rows[rows >= 0]
        return histories

    def _index_encoder_id(self) -> str | None:
        """The encoder the catalogue was embedded with (image_embeddings asset), if recorded."""
        path = self.settings.dataset_warehouse / "image_embeddings.parquet"
        try:
            ids = pd.read_parquet(path, columns=["encoder_id"])["encoder_id"]
            return str(ids.iloc[0]) if len(ids) else None
        except Exception:  # no table (a synthetic index, say): the dimension check still applies
            return None

    def history_rows(self, user_id: str) -> np.ndarray:
        return self.histories.get(user_id, np.empty(0, dtype=np.intp))

    def users(self, limit: int) -> list[dict]:
        """Users the champion knows, the longest histories first (for the gallery)."""
        champion = self._need_champion()
        ids = champion.bundle.user_ids.tolist()
        sizes = [len(self.histories.get(u, ())) for u in ids]
        order = sorted(range(len(ids)), key=lambda i: (-sizes[i], ids[i]))[:limit]
        return [{"user_id": ids[i], "history": sizes[i]} for i in order]

    # --- queries --------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int, tags: list[str]) -> dict:
        champion = self._need_champion()
        cat = self.catalogue
        user_row = champion.user_row(user_id)
        if user_row is None:
            items = self._cold_start(k, cat.rows_with_tags(tags))
        else:
            items = self._known(champion, user_id, user_row, k, tags)
        return {"user_id": user_id, "known_user": user_row is not None, "cold_start": user_row is None,
                "champion_version": champion.version, "ranker": champion.ranker_name,
                "index_version": self.similar.version if self.similar else None,
                "tags": tags, "k": k, "items": items}

    def _user_context(self, user_row: int, user_id: str) -> "_UserContext":
        """What a known user's requests share until the next swap: the champion's best items for
        them (exclusions applied) and, for each, the history item it looks most like. Built on the
        user's first request, then cached (LRU) with this state."""
        champion, cat = self.champion, self.catalogue
        scores = champion.scores(user_row)
        scores += self.unknown_bias
        history = self.history_rows(user_id)
        in_champion = self.cat_to_champ[history]
        excluded = np.union1d(champion.seen_items(user_row), in_champion[in_champion >= 0])
        scores[excluded] = -np.inf                       # never what they already had
        best = fast_top_k(scores, TOP_CACHED)
        best = best[np.isfinite(scores[best])]
        recent = history[: self.settings.history_for_reasons]
        return _UserContext(top_rows=best.astype(np.int32), top_cat=self.champ_to_cat[best].tolist(),
                            top_values=scores[best].tolist(), twins=[UNKNOWN_TWIN] * len(best),
                            twin_similarity=[0.0] * len(best), excluded=excluded,
                            complete=len(best) == int(np.isfinite(scores).sum()),
                            tag_ranks=reasons.history_tag_ranks(cat.tags[r] for r in recent.tolist()),
                            recent_rows=recent)

    def _looks_like(self, rows: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For catalogue rows: the history row each looks most like (-1: no vectors) and the cosine."""
        cat = self.catalogue
        twins, similarity = np.full(len(rows), -1, dtype=np.int32), np.zeros(len(rows), np.float32)
        if self.similar is None:
            return twins, similarity
        history = history[cat.vec_row[history] >= 0]
        has_vector = cat.vec_row[rows] >= 0
        if len(history) and has_vector.any():
            vectors = self.similar.index.vectors
            position, cosine = reasons.looks_like(np.take(vectors, cat.vec_row[rows[has_vector]], axis=0),
                                                  np.take(vectors, cat.vec_row[history], axis=0))
            twins[has_vector], similarity[has_vector] = history[position], cosine
        return twins, similarity

    def _champion_mask(self, tags: tuple[str, ...]) -> np.ndarray:
        """Boolean mask over the champion's items: carries every tag (cached per tag set)."""
        mask = np.zeros(self.champion.n_items, dtype=bool)
        mask[self._candidates(tags)] = True
        return mask

    def _champion_candidates(self, tags: tuple[str, ...]) -> np.ndarray:
        """Sorted champion item rows carrying every tag (cached per tag set)."""
        rows = self.cat_to_champ[self.catalogue.rows_with_tags(list(tags))]
        return np.sort(rows[rows >= 0])

    def _known(self, champion: Champion, user_id: str, user_row: int, k: int, tags: list[str]) -> list[dict]:
        cat = self.catalogue
        context = self._context(user_row, user_id)
        picked = None
        if not tags:
            if k <= len(context.top_rows) or context.complete:
                picked = range(min(k, len(context.top_rows)))
        else:
            keep = np.flatnonzero(self._mask(tuple(tags))[context.top_rows])
            if len(keep) >= k or context.complete:   # the cached list, filtered, is the exact answer
                picked = keep[:k]
        if picked is not None:
            # plain lists from here: a dozen numpy calls on 10-element arrays cost more than the math
            picked = list(picked) if isinstance(picked, range) else picked.tolist()
            rows = [context.top_cat[p] for p in picked]
            values = [context.top_values[p] for p in picked]
            missing = [p for p in picked if context.twins[p] == UNKNOWN_TWIN]
            if missing:   # look-alikes are found once per (user, item), when first shown
                found, cosine = self._looks_like(np.asarray([context.top_cat[p] for p in missing]),
                                                 context.recent_rows)
                for p, twin, value in zip(missing, found.tolist(), cosine.tolist()):
                    context.twins[p], context.twin_similarity[p] = twin, value
            twins = [context.twins[p] for p in picked]
            similarity = [context.twin_similarity[p] for p in picked]
        else:   # the filter left too few of the cached best: score every candidate
            candidates = self._candidates(tuple(tags)) if tags else None
            scores = champion.scores(user_row, candidates)
            items_scored = candidates if candidates is not None else np.arange(champion.n_items)
            scores += self.unknown_bias[items_scored]
            scores[np.isin(items_scored, context.excluded, assume_unique=True)] = -np.inf
            best = fast_top_k(scores, k)
            best = best[np.isfinite(scores[best])]
            found = self.champ_to_cat[items_scored[best]]
            twins, similarity = self._looks_like(found, context.recent_rows)
            rows, values, twins, similarity = found.tolist(), scores[best].tolist(), twins.tolist(), similarity.tolist()
        items = []
        tag_ranks = context.tag_ranks
        for row, value, twin, cosine in zip(rows, values, twins, similarity):
            shared = reasons.shared_tags(cat.tags[row], tag_ranks)
            twin_title = cat.titles[twin] if twin >= 0 else None
            items.append({**cat.card(row), "score": value,
                          "reason": reasons.known_user_reason(twin_title, cosine, shared, champion.ranker_name),
                          "because": {"looks_like": None if twin < 0 else
                                      {"item_id": cat.item_ids[twin], "title": twin_title,
                                       "similarity": round(cosine, 4)},
                                      "shared_tags": shared}})
        return items

    def _cold_start(self, k: int, allowed) -> list[dict]:
        cat = self.catalogue
        rows, ranks = self.cold_rows, self.cold_ranks
        if allowed is not None:
            mask = np.zeros(len(cat), dtype=bool)
            mask[allowed] = True
            keep = mask[rows]
            rows, ranks = rows[keep], ranks[keep]
        return [{**cat.card(r), "score": float(self.popularity[r]),
                 "reason": reasons.cold_start_reason(cat.categories[r], rank),
                 "because": {"looks_like": None, "shared_tags": [], "popularity": float(self.popularity[r])}}
                for r, rank in zip(rows[:k].tolist(), ranks[:k].tolist())]

    def similar_items(self, item_id: str, k: int, tags: list[str]) -> dict:
        similar = self._need_index()
        cat = self.catalogue
        row = cat.row.get(item_id)
        if row is None:
            raise NotFound(f"item {item_id!r} is not in the catalogue of dataset {self.settings.dataset!r}")
        index_row = int(cat.vec_row[row])
        if index_row < 0:
            raise NotFound(f"item {item_id!r} has no image vector in the item index (version "
                           f"{similar.version}): its image was rejected or it is newer than the index")
        allowed, allowed_rows = self._index_filter(similar, tags)
        found, scores = similar.similar_rows(index_row, k, allowed, allowed_rows)
        query_tags = cat.tag_sets[row]
        items = []
        for r, score in zip(self.index_to_cat[found].tolist(), scores.tolist()):
            shared = [t for t in cat.tags[r] if t in query_tags][: reasons.MAX_SHARED]
            items.append({**cat.card(r), "score": score, "reason": reasons.similar_reason(shared, score),
                          "because": {"shared_tags": shared}})
        return {"item": cat.card(row), "index_version": similar.version, "tags": tags, "k": k, "items": items}

    def search_vector(self, vector: np.ndarray, k: int, tags: list[str]) -> dict:
        similar = self._need_index()
        cat = self.catalogue
        _, allowed_rows = self._index_filter(similar, tags)
        found, scores = similar.search_rows(vector, k, allowed_rows)
        items = [{**cat.card(r), "score": s, "reason": f"looks like your picture ({s:.2f})"}
                 for r, s in zip(self.index_to_cat[found].tolist(), scores.tolist()) if r >= 0]
        return {"index_version": similar.version, "tags": tags, "k": k, "items": items}

    def _index_filter(self, similar: SimilarItems, tags: list[str]):
        """(mask over index rows, sorted rows) carrying every tag, or (None, None) for no filter."""
        return self._index_masks(tuple(tags)) if tags else (None, None)

    def _index_mask(self, tags: tuple[str, ...]):
        rows = self.similar.index.candidate_rows(tags=list(tags))
        mask = np.zeros(len(self.similar), dtype=bool)
        mask[rows] = True
        return mask, rows

    def item(self, item_id: str) -> dict:
        row = self.catalogue.row.get(item_id)
        if row is None:
            raise NotFound(f"item {item_id!r} is not in the catalogue of dataset {self.settings.dataset!r}")
        return {**self.catalogue.card(row), "indexed": bool(self.catalogue.vec_row[row] >= 0),
                "popularity": float(self.popularity[row])}

    def history(self, user_id: str, limit: int) -> dict:
        rows = self.history_rows(user_id)
        known = self.champion is not None and self.champion.user_row(user_id) is not None
        return {"user_id": user_id, "known_user": known, "total": int(len(rows)),
                "items": [self.catalogue.card(r) for r in rows[:limit].tolist()]}


def tag_list(values: list[str] | None) -> list[str]:
    """?tags=a&tags=b or ?tags=a,b -> ["a", "b"] (whitespace trimmed, empty dropped, order kept)."""
    out: list[str] = []
    for value in values or []:
        for tag in as_tag_list(value.split(",")):
            tag = tag.strip()
            if tag and tag not in out:
                out.append(tag)
    return out


@dataclass
class LoadReport:
    at: float
    component: str              # champion | index | state
    version: str | None
    error: str

    def as_dict(self) -> dict:
        return {"at": _iso(self.at), "component": self.component, "version": self.version, "error": self.error}


@dataclass
class _Status:
    alias_version: str | None = None
    fallback: str | None = None            # why the served champion is not the alias's version
    last_check_at: float | None = None
    last_swap_at: float | None = None
    swaps: int = 0
    errors: deque = field(default_factory=lambda: deque(maxlen=20))


class StateManager:
    """Owns the current ServingState; reload() checks for new versions, a thread calls it."""

    def __init__(self, settings: ServingSettings, champion_loader=None):
        self.settings = settings
        self._state: ServingState | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loader = champion_loader            # (dataset, version) -> RankerBundle; tests inject
        self._failed_alias: tuple[str, float] | None = None   # (version, when): retried after a while
        self._failed_index: object = None
        self._status = _Status()

    @property
    def state(self) -> ServingState | None:
        return self._state

    # --- the watcher ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="visrec-state-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.reload()
            except Exception:  # the watcher must survive anything; reload records what it can
                log.exception("state reload failed")
            self._stop.wait(self.settings.poll_seconds)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._state is not None and self._state.ready:
                return True
            time.sleep(0.05)
        return False

    # --- one check ------------------------------------------------------------------------------
    def reload(self) -> dict:
        """Load what changed and swap it in if it all loaded; returns what happened."""
        with self._reload_lock:
            current = self._state
            self._status.last_check_at = time.time()
            index, index_changed = self._next_index(current)
            champion, champion_changed = self._next_champion(current)
            outcome = {"swapped": False, "champion_changed": champion_changed, "index_changed": index_changed}
            if current is not None and not (index_changed or champion_changed):
                return outcome
            try:
                state = ServingState(self.settings, champion, index)
            except Exception as exc:
                self._record("state", None, f"{type(exc).__name__}: {exc}")
                log.error("new serving state failed to build: %s", traceback.format_exc())
                return outcome
            self._swap(state)
            outcome["swapped"] = True
            return outcome

    def _swap(self, state: ServingState) -> None:
        self._state = state            # the swap: one reference assignment
        self._status.last_swap_at, self._status.swaps = time.time(), self._status.swaps + 1
        if state.champion is not None:
            self._write_last_good(state)
        # Objects that live until the next swap need not be traversed by every collection: freeze
        # them (after collecting the previous state's cycles), so GC pauses stay short under load.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.info("serving champion %s, index %s", state.champion and state.champion.version,
                 state.similar and state.similar.version)

    # --- the index ------------------------------------------------------------------------------
    def _next_index(self, current: ServingState | None) -> tuple[IndexSnapshot | None, bool]:
        kept = current.index if current is not None else None
        try:
            signature = self._index_signature()
        except Exception as exc:
            self._record("index", None, f"cannot check the index: {type(exc).__name__}: {exc}")
            return kept, False
        if signature is None or (kept is not None and kept.signature == signature):
            return kept, False
        if signature == self._failed_index:
            return kept, False
        try:
            exact = self._load_index()
            if len(exact) == 0:
                raise ValueError("the index holds no items")
            if not np.isfinite(exact.vectors).all():
                raise ValueError("the index holds non-finite vectors")
            similar = SimilarItems(exact, self.settings.neighbours, self.settings.neighbour_table_max_items)
        except Exception as exc:
            self._failed_index = signature
            self._record("index", str(signature), f"{type(exc).__name__}: {exc}")
            return kept, False
        return IndexSnapshot(similar, signature, time.time(), self._index_location()), True

    def _index_location(self) -> str:
        if self.settings.index_source == "snapshot":
            return str(self.settings.snapshot_path)
        return self._milvus_uri()

    def _milvus_uri(self) -> str:
        return self.settings.milvus_uri or str(self.settings.dataset_warehouse / "milvus.db")

    def _milvus(self):
        from ..index.milvus_index import MilvusItemIndex

        return MilvusItemIndex(uri=self._milvus_uri(), alias=f"visrec_items_{self.settings.dataset}")

    def _snapshot_stat(self):
        path = self.settings.snapshot_path
        if not path.is_file():
            return None
        stat = path.stat()
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _index_signature(self):
        if self.settings.index_source == "snapshot":
            return self._snapshot_stat()
        with self._milvus() as milvus:   # open only for the check: milvus-lite allows one process
            collection = milvus.current_collection()
        # item_index updates small changes in place (same collection) and rewrites the snapshot
        # right after, so where the warehouse is visible the snapshot's stat tells those apart
        return None if collection is None else (collection, self._snapshot_stat())

    def _load_index(self) -> ExactIndex:
        if self.settings.index_source == "snapshot":
            return ExactIndex.load(self.settings.snapshot_path)
        with self._milvus() as milvus:
            collection = milvus.current_collection()
            if collection is None:
                raise LookupError(f"no collection behind the Milvus alias at {self._milvus_uri()}")
            return ExactIndex.from_milvus(milvus)

    # --- the champion ---------------------------------------------------------------------------
    def _next_champion(self, current: ServingState | None) -> tuple[Champion | None, bool]:
        from .. import promotion

        kept = current.champion if current is not None else None
        try:
            alias = promotion.current_champion(self.settings.dataset)
        except Exception as exc:
            self._record("champion", None, f"cannot read the registry: {type(exc).__name__}: {exc}")
            return kept, False
        alias_version = str(alias.version) if alias is not None else None
        self._status.alias_version = alias_version
        if alias_version is None:
            return kept, False                      # no champion yet (or alias removed): keep serving
        if kept is not None and kept.version == alias_version:
            self._status.fallback = None
            return kept, False
        if self._failed_alias is not None and self._failed_alias[0] == alias_version and \
                time.time() - self._failed_alias[1] < RETRY_FAILED_S:   # not again every poll
            return kept, False
        try:
            champion = load_champion(self.settings.dataset, alias_version, self._loader)
            self._status.fallback = None
            return champion, True
        except ChampionLoadError as exc:
            self._failed_alias = (alias_version, time.time())
            self._record("champion", alias_version, str(exc))
            if kept is not None:
                self._status.fallback = (f"champion alias points at version {alias_version}, which cannot "
                                         f"serve; version {kept.version} keeps serving")
                return kept, False
        return self._fallback_champion(alias_version)

    def _fallback_champion(self, failed: str) -> tuple[Champion | None, bool]:
        """Nothing serving and the alias's version is broken: the last version that served here,
        then earlier champions, newest first."""
        from .. import promotion

        candidates = []
        last_good = self._read_last_good().get("champion_version")
        if last_good:
            candidates.append(str(last_good))
        try:
            candidates += [str(v) for v in reversed(promotion.history(self.settings.dataset))]
        except Exception as exc:
            self._record("champion", None, f"cannot read the champion history: {exc}")
        tried = {failed}
        for version in candidates:
            if version in tried:
                continue
            tried.add(version)
            try:
                champion = load_champion(self.settings.dataset, version, self._loader)
            except ChampionLoadError as exc:
                self._record("champion", version, str(exc))
                continue
            self._status.fallback = (f"champion alias points at version {failed}, which cannot serve; "
                                     f"serving version {version} (last good) instead")
            log.error(self._status.fallback)
            return champion, True
        return None, False

    # --- last good ------------------------------------------------------------------------------
    @property
    def last_good_path(self) -> Path:
        return self.settings.serving_dir / "last_good.json"

    def _write_last_good(self, state: ServingState) -> None:
        record = {"champion_version": state.champion.version, "ranker": state.champion.ranker_name,
                  "index_version": state.similar.version if state.similar else None,
                  "written_at": _iso(time.time()), "pid": os.getpid()}
        path = self.last_good_path
        try:
            write_atomically(path, json.dumps(record))   # a kill leaves the old or the new record
        except OSError as exc:
            self._record("state", None, f"cannot write {path}: {exc}")

    def _read_last_good(self) -> dict:
        try:
            return json.loads(self.last_good_path.read_text())
        except (OSError, ValueError):
            return {}

    # --- reporting ------------------------------------------------------------------------------
    def _record(self, component: str, version: str | None, error: str) -> None:
        report = LoadReport(time.time(), component, version, error)
        self._status.errors.append(report)
        log.error("%s %s: %s", component, version or "", error)

    def status(self) -> dict:
        state, s = self._state, self._status
        champion = state.champion if state is not None else None
        index = state.index if state is not None else None
        errors = [e.as_dict() for e in s.errors]
        return {
            "dataset": self.settings.dataset,
            "ready": bool(state is not None and state.ready),
            "champion": None if champion is None else {
                "version": champion.version, "ranker": champion.ranker_name, "users": champion.n_users,
                "items": champion.n_items, "loaded_at": _iso(champion.loaded_at),
                "fast_path": champion.user_vectors is not None},
            "champion_alias_version": s.alias_version,
            "fallback": s.fallback,
            "index": None if index is None else {
                "version": index.similar.version, "items": len(index.similar), "dim": index.similar.index.dim,
                "loaded_at": _iso(index.loaded_at), "source": self.settings.index_source,
                "location": index.location, "neighbour_table": index.similar.neighbour_rows is not None},
            "catalogue_items": len(state.catalogue) if state is not None else 0,
            "last_check_at": _iso(s.last_check_at), "last_swap_at": _iso(s.last_swap_at), "swaps": s.swaps,
            "last_error": errors[-1] if errors else None,
            "errors": errors,
            "poll_seconds": self.settings.poll_seconds,
        }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
