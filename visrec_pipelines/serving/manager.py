"""How a new champion or index replaces what serves, without downtime, and what ``/status`` says.

``StateManager.reload`` asks both sources (``sources``) what should serve, builds a new state beside
the running one when either changed, and swaps only if it built: the swap is one reference
assignment (see ``queries``). A thread calls ``reload`` every ``serving_poll_s`` seconds; a version
that fails is reported in ``status()`` and the previous one keeps serving; ``reload(force=True)``
(``POST /admin/reload``) retries failed versions at once. Everything ``status()`` says passes
through ``problems.public``: what failed and why, without absolute paths or multi-line dumps.
"""
import gc
import logging
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..settings import Settings
from ..times import iso_utc
from .problems import public
from .queries import ServingState
from .sources import ChampionSource, IndexSource, read_state

log = logging.getLogger("visrec.serving")


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else iso_utc(seconds, "seconds")


@dataclass
class LoadReport:
    at: float
    component: str              # champion | index | state
    version: str | None
    error: str

    def as_dict(self) -> dict:
        return {"at": _iso(self.at), "component": self.component, "version": self.version, "error": self.error}


@dataclass
class _Checks:
    last_check_at: float | None = None
    last_swap_at: float | None = None
    swaps: int = 0
    errors: deque = field(default_factory=lambda: deque(maxlen=20))


class StateManager:
    """Owns the current ServingState; reload() checks for new versions, a thread calls it.
    ``champion_loader`` (version -> RankerBundle) replaces the registry's loader in tests."""

    def __init__(self, settings: Settings, champion_loader=None):
        self.settings = settings
        self._state: ServingState | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._checks = _Checks()
        # folders whose paths /status shows relative to them (the dataset's, the warehouse's, ...)
        self.public_roots = (settings.dataset_folder().root, settings.warehouse_for().dir,
                             settings.assets_dir, settings.warehouse_dir, settings.root_dir)
        self.indexes = IndexSource(settings, self._report)
        self.champions = ChampionSource(settings, self._report, champion_loader)

    @property
    def state(self) -> ServingState | None:
        return self._state

    @property
    def last_good_path(self) -> Path:
        return self.champions.last_good.path

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
            self._stop.wait(self.settings.serving_poll_s)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._state is not None and self._state.ready:
                return True
            time.sleep(0.05)
        return False

    # --- one check ------------------------------------------------------------------------------
    def reload(self, force: bool = False) -> dict:
        """Load what changed and swap it in if it all loaded; returns what happened. ``force``:
        versions that failed are tried again now, not after RETRY_FAILED_S."""
        with self._reload_lock:
            current = self._state
            self._checks.last_check_at = time.time()
            index, index_changed = self.indexes.next(current.index if current is not None else None, force)
            champion, champion_changed = self.champions.next(current.champion if current is not None else None,
                                                             force)
            outcome = {"swapped": False, "champion_changed": champion_changed, "index_changed": index_changed}
            if current is not None and not (index_changed or champion_changed):
                return outcome
            try:
                state = read_state(self.settings, champion, index)
            except Exception as exc:
                self._report("state", None, f"{type(exc).__name__}: {exc}")
                log.error("new serving state failed to build: %s", traceback.format_exc())
                return outcome
            self._swap(state)
            outcome["swapped"] = True
            return outcome

    def _swap(self, state: ServingState) -> None:
        self._state = state            # the swap: one reference assignment
        self._checks.last_swap_at, self._checks.swaps = time.time(), self._checks.swaps + 1
        if state.champion is not None:
            self.champions.last_good.write(state)
        # Objects that live until the next swap need not be traversed by every collection: freeze
        # them (after collecting the previous state's cycles), so GC pauses stay short under load.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.info("serving champion %s, index %s", state.champion and state.champion.version,
                 state.similar and state.similar.version)

    # --- reporting ------------------------------------------------------------------------------
    def _report(self, component: str, version: str | None, error: str) -> None:
        log.error("%s %s: %s", component, version or "", error)     # the log keeps the whole text
        self._checks.errors.append(LoadReport(time.time(), component, version, self.public(error)))

    def public(self, problem: BaseException | str) -> str:
        return public(problem, self.public_roots)

    def status(self) -> dict:
        state, checks = self._state, self._checks
        champion = state.champion if state is not None else None
        index = state.index if state is not None else None
        errors = [e.as_dict() for e in checks.errors]
        return {
            "dataset": self.settings.dataset,
            "ready": bool(state is not None and state.ready),
            "champion": None if champion is None else {
                "version": champion.version, "ranker": champion.ranker_name, "users": champion.n_users,
                "items": champion.n_items, "loaded_at": _iso(champion.loaded_at),
                "fast_path": champion.user_vectors is not None,
                "prefilled": state.prefill_report,
                "ann_recall": None if state.best_items is None else state.best_items.recall},
            "champion_alias_version": self.champions.alias_version,
            "fallback": self.champions.fallback,
            "index": None if index is None else {
                "version": index.similar.version, "items": len(index.similar), "dim": index.similar.index.dim,
                "loaded_at": _iso(index.loaded_at), "source": self.settings.index_source,
                "location": index.location, "neighbour_table": index.similar.neighbour_rows is not None,
                "ann_recall": None if index.similar.ann is None else index.similar.ann.recall},
            "catalogue_items": len(state.catalogue) if state is not None else 0,
            "problems": [self.public(p) for p in state.problems] if state is not None else [],
            "last_check_at": _iso(checks.last_check_at), "last_swap_at": _iso(checks.last_swap_at),
            "swaps": checks.swaps,
            "last_error": errors[-1] if errors else None,
            "errors": errors,
            "poll_seconds": self.settings.serving_poll_s,
        }
