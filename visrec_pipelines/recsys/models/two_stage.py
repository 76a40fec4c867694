"""The two-stage recommender: candidate sources nominate a few hundred items per user, a learned
ranker (LightGBM LambdaRank) orders them.

Stage 1 (``recsys.candidates``): co-occurrence (EASE), sequence, factors, looks, content and time
signals score every item; each nominating signal puts its top items into the user's candidate set.
Stage 2: each candidate is described by every signal's score and rank, plus the user (activity,
how new the things they pick usually are) and the item's age against that; LambdaRank learns the
order. Signals that do not pay on a catalogue get no splits: the same code serves a film catalogue
where posters barely predict taste and a shop where looks and new arrivals carry it.

Training follows the protocol one level down. The ranker learns from the validation slice only:
candidates come from sources fitted on train minus validation, labels are the validation
positives (users held out of it choose the number of trees). Serving uses sources refitted on all
of the train data, each user's "now" moved to their latest positive.

``score`` covers every item (the contract): candidates get the learned score, every other item a
lower one ordered by popularity. ``explain`` says why an item was picked: which signals nominated
it, which signal groups pushed it up (LightGBM's per-feature contributions) and which of the
user's items it looks like.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..base import Ranker, TrainData
from ..candidates import NOMINATE, ItemSpace, Sources
from . import register

SIGNAL_GROUPS = {"ease": "co-occurrence", "ease_recent": "co-occurrence", "sequence": "sequence",
                 "factors": "factors", "visual_max": "visual", "visual_latest": "visual",
                 "visual_profile": "visual", "content": "content", "content_cf": "content", "cold": "content",
                 "trend_week": "time", "trend_month": "time", "trend_year": "time", "newness": "time",
                 "age_days": "time", "popularity": "popularity"}
USER_FEATURES = ("user_positives", "user_span_days", "user_typical_age", "age_vs_typical")
LABEL_FRACTION = 0.2          # the slice the ranker learns from, when fit is not handed one
CV_FOLDS = 4                  # folds of users that choose the number of trees
# users whose held-out positives make the examples of one label slice: ~300 candidates each, so the
# booster's cost (and the examples' memory, ~40 floats a row) stops growing with the shop beyond this
MAX_QUERY_USERS = 6_000
LGB_PARAMS = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [20], "learning_rate": 0.05, "max_bin": 63,
              "num_leaves": 31, "min_data_in_leaf": 50, "feature_fraction": 0.8, "bagging_fraction": 0.8,
              "bagging_freq": 1, "lambda_l2": 10.0, "lambdarank_truncation_level": 40,
              "deterministic": True, "force_row_wise": True, "verbose": -1}


# Features the ranker may be fitted without, chosen by the CV over the label slices: trees find some
# split in any noisy feature, so where looks do not predict taste (film posters) the ranker without
# them scores better across the folds, where they do (a fashion shop) the one with them does.
OPTIONAL_SIGNALS = ("visual_max", "visual_latest", "visual_profile")


class _FeatureLayout(NamedTuple):
    names: tuple[str, ...]        # the booster's features
    rank_columns: np.ndarray      # the columns holding a signal's rank (log2(2 + rank))
    rank_signals: list[str]       # ... and their signals
    group_of: np.ndarray          # each feature's signal group, as a position in ``groups``
    groups: list[str]             # the groups, in order of first appearance


@register(order=110)
class TwoStageRanker(Ranker):
    name = "two_stage"
    train_priority = 10          # the slowest to train: it fits its candidate sources three times
    # ``score`` puts every candidate at or above this and every other item below it, so a caller
    # holding the scores knows which items ``explain`` has nothing to say about (no source found them)
    CANDIDATE_FLOOR = 1.0

    def __init__(self, max_trees: int = 400, patience: int = 25, threads: int = 1, seed: int = 0,
                 nominate: dict | None = None, drop_signals: tuple[str, ...] = (), label_slices: int = 2):
        super().__init__(seed)
        self.max_trees, self.patience, self.threads = max_trees, patience, threads
        self.nominate = dict(NOMINATE if nominate is None else nominate)
        self.drop_signals = tuple(drop_signals)     # ablations: signals the ranker may not see
        self.label_slices = label_slices
        self.booster = self.sources = None
        self.feature_names: list[str] = []       # the booster's features (hidden ones left out)
        self.hidden: tuple[str, ...] = ()         # features computed but left out, chosen in fit
        self.best_trees, self.cv_ndcg = 0, {}

    # --- training ---------------------------------------------------------------------------
    def fit(self, data: TrainData, validation: TrainData | None = None) -> TwoStageRanker:
        """``validation`` carved from ``data`` (``Split.validation``) is the slice to learn from;
        otherwise the same cut (each user's last 20%) is carved here. With ``label_slices`` 2 the
        same cut is made once more, one step back in time, for a second set of examples."""
        import lightgbm as lgb

        self.hidden, self.booster, self.cv_ndcg = (), None, {}
        space = ItemSpace(data, self.seed)
        held, rest = _carve(data, validation), data
        parts = []
        for _ in range(self.label_slices):
            parts.append(self._examples(rest, held, space))
            rest = _subset(rest, ~held)
            held = _carve(rest, None)
            if not held.any():
                break
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        query = np.concatenate([p[2] + n * data.n_users for n, p in enumerate(parts)])
        params = {**LGB_PARAMS, "num_threads": self.threads, "seed": self.seed}
        sizes = np.unique(query, return_counts=True)[1]             # rows come grouped by query
        names = list(self.feature_names)
        optional = tuple(n for n in names if n.removesuffix("_rank") in OPTIONAL_SIGNALS)
        best = None
        for hidden in ([(), optional] if optional and len(sizes) >= 2 * CV_FOLDS else [()]):
            keep = [c for c, n in enumerate(names) if n not in hidden]
            learn = lgb.Dataset(x[:, keep], y, group=sizes, feature_name=[names[c] for c in keep],
                                free_raw_data=False)
            score, trees = self._trees(params, learn, len(sizes))
            self.cv_ndcg["without " + "/".join(OPTIONAL_SIGNALS) if hidden else "all signals"] = round(score, 5)
            if best is None or score > best[0]:                     # ties: all signals
                best = (score, trees, hidden, learn, [names[c] for c in keep])
        _, self.best_trees, self.hidden, learn, self.feature_names = best
        self.booster = lgb.train(params, learn, self.best_trees)
        self.sources = Sources(data, space, self.seed)              # serve from all of train
        self.seen = data.matrix()
        return self

    def _trees(self, params: dict, learn, n_queries: int) -> tuple[float, int]:
        """(mean NDCG@20 over CV_FOLDS folds of users at its peak, trees at the peak); without
        enough users for folds, (0, a fifth of max_trees)."""
        import lightgbm as lgb

        if n_queries < 2 * CV_FOLDS:
            return 0.0, self.max_trees // 5
        curves = lgb.cv(params, learn, self.max_trees, nfold=CV_FOLDS, stratified=False, seed=self.seed,
                        callbacks=[lgb.early_stopping(self.patience, verbose=False)])
        mean = next(v for k, v in curves.items() if k.endswith("ndcg@20-mean"))
        return float(max(mean)), int(np.argmax(mean)) + 1

    def _examples(self, data: TrainData, held: np.ndarray, space: ItemSpace):
        """Features, labels and user of every candidate of the users with a held-out positive
        among their candidates; candidates come from sources fitted on ``data`` minus ``held``."""
        labels = sp.csr_matrix((np.ones(int(held.sum()), np.float32), (data.users[held], data.items[held])),
                               shape=(data.n_users, data.n_items))
        sources = Sources(_subset(data, ~held), space, self.seed)
        users = np.flatnonzero(np.diff(labels.indptr) > 0)
        if len(users) > MAX_QUERY_USERS:        # a large shop: a fixed sample of users to learn from
            users = np.sort(np.random.default_rng(self.seed).choice(users, MAX_QUERY_USERS, replace=False))
        x, rows, items = self._pairs(sources, users)
        y = np.asarray(labels[users[rows], items]).ravel()
        useful = (np.bincount(rows, weights=y, minlength=len(users)) > 0)[rows]   # a query needs a hit
        return x[useful], y[useful], users[rows[useful]]

    # --- candidates and features ----------------------------------------------------------------
    def _batches(self, n_users: int, n_items: int):
        size = int(np.clip((1 << 21) // max(n_items, 1), 8, 512))
        return [np.arange(n_users)[s:s + size] for s in range(0, n_users, size)]

    def _pairs(self, sources: Sources, users: np.ndarray):
        """Features (n_pairs, f), user row in ``users`` and item of every candidate, grouped by user."""
        batches = self._batches(len(users), sources.history.n_items)
        parts = [self._batch_pairs(sources, users[b]) for b in batches]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] + b[0] for p, b in zip(parts, batches)]),
                np.concatenate([p[2] for p in parts]))

    def _batch_pairs(self, sources: Sources, users: np.ndarray):
        signals = {k: v for k, v in sources.signals(users).items() if k not in self.drop_signals}
        seen = sources.history.seen[users].toarray() > 0
        chosen = np.zeros(seen.shape, dtype=bool)
        heads = {}                      # a large catalogue: each signal's rows without a full sort
        for name, n in self.nominate.items():
            if name in signals and n > 0:
                if seen.shape[1] > EXACT_RANK_ITEMS:
                    heads[name] = _Heads(_masked(signals[name], seen))
                    heads[name].mark_top(chosen, n)
                else:      # as it always was (NaN left in): argpartition's ties fall as before
                    _mark_top(chosen, np.where(seen, -np.inf, signals[name]), n)
        chosen &= ~seen
        rows, items = np.nonzero(chosen)                             # grouped by user, items ascending
        columns, names = [], []
        for name, values in signals.items():
            picked = values[rows, items]
            columns.append(np.where(np.isfinite(picked), picked, np.nan))
            names.append(name)
            if name in self.nominate:
                ranks = heads[name].ranks(rows, items) if name in heads else _ranks_of(values, seen, rows, items)
                columns.append(np.log2(2.0 + ranks))
                names.append(f"{name}_rank")
        h = sources.history
        users_of = users[rows]
        n_pos = np.diff(h.seen.indptr)[users_of].astype(np.float32)
        typical = h.typical_age_days[users_of]
        age = signals["age_days"][rows, items] if "age_days" in signals else np.full(len(rows), np.nan)
        columns += [np.log1p(n_pos), h.span_days[users_of], typical, np.log1p(np.maximum(age, 0)) - typical]
        names += list(USER_FEATURES)
        if self.booster is None:                 # still learning: every feature, fit chooses
            self.feature_names = names
        keep = [c for c, n in enumerate(names) if n not in self.hidden]
        return np.column_stack([columns[c] for c in keep]).astype(np.float32), rows, items

    # --- serving --------------------------------------------------------------------------------
    def score(self, users: np.ndarray) -> np.ndarray:
        """Candidates score in (1, 2] by their place in the learned order (trees give many exact
        ties: those go to the more popular item, then the lower index); every other item ranks
        below them by popularity, in [0, 1)."""
        users = np.atleast_1d(users)
        out = np.empty((len(users), self.sources.history.n_items), dtype=np.float32)
        for batch in self._batches(len(users), self.sources.history.n_items):
            x, rows, items = self._user_pairs(int(users[0])) if len(users) == 1 else \
                self._batch_pairs(self.sources, users[batch])
            out[batch] = self._block(x, rows, items, len(batch))
        return out

    def _block(self, x: np.ndarray, rows: np.ndarray, items: np.ndarray, n_users: int) -> np.ndarray:
        """``score``'s rows for one batch of users from their candidate pairs."""
        h = self.sources.history
        popularity = np.log1p(h.counts) / (np.log1p(h.counts.max()) + 1.0)         # in [0, 1)
        learned = self.booster.predict(x, num_threads=self.threads) if len(rows) else np.zeros(0)
        block = np.broadcast_to(popularity, (n_users, h.n_items)).astype(np.float32)
        block[rows, items] = self.CANDIDATE_FLOOR + _places(rows, learned, popularity[items], items)
        return block

    def score_and_explain(self, users: np.ndarray, k: int) -> tuple[np.ndarray, list[list[dict]]]:
        """``score(users)`` and, per user, ``explain`` of their best ``k`` unseen items, each
        batch's pairs built once for both (serving's warm start: half the work of the two calls)."""
        users = np.atleast_1d(users)
        out = np.empty((len(users), self.sources.history.n_items), dtype=np.float32)
        explained: list[list[dict]] = []
        for batch in self._batches(len(users), self.sources.history.n_items):
            x, rows, items = self._batch_pairs(self.sources, users[batch])
            out[batch] = self._block(x, rows, items, len(batch))
            bounds = np.searchsorted(rows, np.arange(len(batch) + 1))
            for j, n in enumerate(batch.tolist()):
                at = slice(bounds[j], bounds[j + 1])
                best = self.best_of(out[n:n + 1].copy(), users[n:n + 1], k)[0]
                explained.append(self._explained(int(users[n]), best, x[at], items[at]))
                self._keep(int(users[n]), x[at], items[at])
        return out, explained

    def keep_pairs(self, budget_bytes: int) -> None:
        """From now on keep the candidate pairs ``score_and_explain`` builds, per user, within
        ``budget_bytes`` (first come, first kept), so a later ``explain`` of any of that user's items
        costs only their contributions (serving: the reasons of a tag filter's picks). Calling it
        again changes the budget and keeps what is kept."""
        kept = self.__dict__.get("_kept_pairs")
        self._kept_pairs = {"budget": int(budget_bytes), "used": kept["used"] if kept else 0,
                            "pairs": kept["pairs"] if kept else {}}

    def _pairs_key(self, user: int) -> tuple:
        return (user, id(self.sources), id(self.booster), self.hidden)     # a refit makes new ones

    def _keep(self, user: int, x: np.ndarray, items: np.ndarray) -> None:
        kept = self.__dict__.get("_kept_pairs")
        if kept is not None and kept["used"] + x.nbytes + items.nbytes <= kept["budget"]:
            key = self._pairs_key(user)
            if key not in kept["pairs"]:
                kept["pairs"][key] = (x.copy(), np.zeros(len(items), dtype=np.intp), items.copy())
                kept["used"] += x.nbytes + items.nbytes

    def explain(self, user: int, items: np.ndarray | None = None, k: int = 20) -> list[dict]:
        """Why each item is recommended to ``user`` (default: their top ``k``), one dict per item:
        ``nominated_by`` {signal: rank} of the signals whose candidates it was among, ``pushed_by``
        {signal group: contribution to the learned score}, largest first (LightGBM's exact
        per-feature contributions, summed by group), ``look_alike`` the user's recent item it
        looks most like and ``look_alike_similarity`` the image cosine (None without images)."""
        user = int(user)
        items = self.recommend(np.array([user]), k=k)[0] if items is None else np.asarray(items, dtype=int)
        x, _, candidates = self._user_pairs(user)
        return self._explained(user, items, x, candidates)

    def _explained(self, user: int, items: np.ndarray, x: np.ndarray, candidates: np.ndarray) -> list[dict]:
        """``explain``'s entries from the user's candidate pairs (features ``x``, items ``candidates``,
        ascending as ``_batch_pairs`` builds them)."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        at = np.minimum(np.searchsorted(candidates, items), max(len(candidates) - 1, 0))
        is_candidate = candidates[at] == items if len(candidates) else np.zeros(len(items), dtype=bool)
        # contributions only for the items asked about: SHAP values cost ~25x a prediction per row,
        # so all ~300 candidates took 77 ms where 10 take 3 (movielens-small)
        asked = np.unique(at[is_candidate])
        contributions = dict(zip(asked.tolist(), self.booster.predict(x[asked], pred_contrib=True,
                                                                      num_threads=self.threads)
                                 if len(asked) else []))
        layout = self._feature_layout()
        recent = self.sources.history.recent[user]
        recent = recent[recent >= 0]
        visual = self.sources.space.visual
        looks = visual[recent] if visual is not None and len(recent) else None
        out = []
        for item, row, candidate in zip(items.tolist(), at.tolist(), is_candidate.tolist()):
            entry = {"item": item, "candidate": candidate, "nominated_by": {}, "pushed_by": {},
                     "look_alike": None, "look_alike_similarity": None}
            if candidate:
                ranks = [int(round(2.0 ** value - 2)) for value in x[row, layout.rank_columns].tolist()]
                entry["nominated_by"] = {name: rank for name, rank in zip(layout.rank_signals, ranks)
                                         if rank < self.nominate[name]}
                entry["pushed_by"] = self._by_group(contributions[row][:-1])
            if looks is not None:
                sims = looks @ visual[item]
                entry["look_alike"], entry["look_alike_similarity"] = int(recent[np.argmax(sims)]), float(sims.max())
            out.append(entry)
        return out

    def _feature_layout(self) -> _FeatureLayout:
        """Where the booster's features say what ``explain`` reports, worked out once per feature list."""
        names = tuple(self.feature_names)
        layout = self.__dict__.get("_layout")
        if layout is None or layout.names != names:
            ranked = [(c, n[:-5]) for c, n in enumerate(names) if n.endswith("_rank")]
            groups: dict[str, int] = {}
            index = [groups.setdefault("user" if n in USER_FEATURES else SIGNAL_GROUPS.get(n.removesuffix("_rank"), n),
                                       len(groups)) for n in names]
            layout = _FeatureLayout(names, np.asarray([c for c, _ in ranked], dtype=np.intp), [n for _, n in ranked],
                                    np.asarray(index, dtype=np.intp), list(groups))
            self._layout = layout
        return layout

    def _user_pairs(self, user: int):
        """``_batch_pairs`` of one user, kept for the next call: serving asks for a user's scores
        and then why (``explain``) in one request, and the pairs are most of either's cost."""
        key = self._pairs_key(user)
        kept = self.__dict__.get("_kept_pairs")
        if kept is not None and key in kept["pairs"]:
            return kept["pairs"][key]
        last = self.__dict__.get("_last_pairs")          # one slot, swapped whole: safe across threads
        if last is None or last[0] != key:
            last = (key, self._batch_pairs(self.sources, np.array([user])))
            self._last_pairs = last
        return last[1]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_last_pairs", None)                   # caches, not the model
        state.pop("_kept_pairs", None)
        state.pop("_layout", None)
        return state

    def _by_group(self, values: np.ndarray) -> dict[str, float]:
        """Per-feature values summed by signal group (in feature order, as float64), largest first."""
        layout = self._feature_layout()
        totals = np.bincount(layout.group_of, weights=np.asarray(values, dtype=np.float64),
                             minlength=len(layout.groups)).tolist()
        return dict(sorted(zip(layout.groups, totals), key=lambda kv: -abs(kv[1])))

    def signal_importance(self) -> dict[str, float]:
        """Share of the learned ranker's total gain per signal group (what it leaned on)."""
        totals = self._by_group(self.booster.feature_importance("gain"))
        whole = sum(totals.values()) or 1.0
        return {group: round(value / whole, 4) for group, value in totals.items()}


def _places(rows: np.ndarray, learned: np.ndarray, popularity: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Each candidate's place in its row's order by (learned, popularity, -item), as
    (n - place) / n in (0, 1]: 1 for the best of n."""
    order = np.lexsort((-items, popularity, learned, -rows))[::-1]     # rows ascending, best first
    sizes = np.bincount(rows)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.empty(len(rows), dtype=np.float64)
    place = np.arange(len(rows)) - start[rows[order]]
    out[order] = (sizes[rows[order]] - place) / sizes[rows[order]]
    return out


def _mark_top(chosen: np.ndarray, scores: np.ndarray, n: int) -> None:
    """Set ``chosen`` at each row's ``n`` best finite scores."""
    n = min(n, scores.shape[1])
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    finite = np.isfinite(np.take_along_axis(scores, top, axis=1))
    chosen[np.repeat(np.arange(len(scores)), n)[finite.ravel()], top[finite]] = True


def _masked(values: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """A signal's row as ranked: seen items and items it cannot score (NaN) at -inf. Not
    ``nan_to_num``: that also turns -inf (an item the signal rules out) into a finite number, which
    a row with few scored items would then nominate."""
    out = np.where(np.isnan(values), np.float32(-np.inf), values)
    out[seen] = -np.inf
    return out


def _ranks_of(values: np.ndarray, seen: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """0-based rank of each (row, item) among the row's unseen items (best = 0; ties share the
    best rank): the number of unseen items scored higher, by binary search in the sorted row."""
    masked = _masked(values, seen)
    ascending = np.sort(masked, axis=1)
    picked = masked[rows, items]
    out = np.empty(len(rows), dtype=np.float32)
    bounds = np.searchsorted(rows, np.arange(len(values) + 1))
    for r in range(len(values)):
        at = slice(bounds[r], bounds[r + 1])
        out[at] = values.shape[1] - np.searchsorted(ascending[r], picked[at], side="right")
    return out


# Above this many items, sorting and partitioning every row of every signal is most of two_stage's
# cost (12 signals x ~3 ms a user at 100k items). The rank feature is binned by LightGBM (max_bin 63),
# and a sample's estimate of a deep rank (~1% median error at 8k samples) changes little it can see.
EXACT_RANK_ITEMS = 20_000
RANK_SAMPLE = 8_192
RANK_HEAD = 2_048          # about this many of a row's best are ranked exactly: far past NOMINATE's


@functools.lru_cache(maxsize=4)
def _rank_sample(n_items: int) -> np.ndarray:
    return np.sort(np.random.default_rng(0).choice(n_items, RANK_SAMPLE, replace=False))


class _Heads:
    """One signal's rows in a large catalogue: a fixed sample of items, sorted, estimates where each
    row's best ~RANK_HEAD end (the threshold); only the items above it are partitioned (the
    nominations) and sorted (exact ranks). A deeper item's rank is the row's size times the share
    of the sample scoring higher."""

    def __init__(self, masked: np.ndarray):
        self.masked = masked
        n_items = masked.shape[1]
        self.sampled = np.sort(masked[:, _rank_sample(n_items)], axis=1)           # ascending
        head = min(RANK_SAMPLE, -(-RANK_SAMPLE * RANK_HEAD // n_items))           # sampled values in it
        self.threshold = self.sampled[:, RANK_SAMPLE - head]
        self.above = [np.flatnonzero(row > cut) for row, cut in zip(masked, self.threshold)]

    def mark_top(self, chosen: np.ndarray, n: int) -> None:
        """``_mark_top`` for these rows."""
        for r, above in enumerate(self.above):
            if len(above) < n:             # ties at the threshold, or few scored items: the whole row
                _mark_top(chosen[r:r + 1], self.masked[r:r + 1], n)
                continue
            chosen[r, above[np.argpartition(-self.masked[r, above], n - 1)[:n]]] = True

    def ranks(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``_ranks_of`` for these rows: exact above the threshold, estimated below it."""
        n_items = self.masked.shape[1]
        picked = self.masked[rows, items]
        bounds = np.searchsorted(rows, np.arange(len(self.masked) + 1))
        out = np.empty(len(rows), dtype=np.float32)
        for r, above in enumerate(self.above):
            at = slice(bounds[r], bounds[r + 1])
            mine = picked[at]
            head = np.sort(self.masked[r, above])
            exact = len(head) - np.searchsorted(head, mine, side="right")
            share = (RANK_SAMPLE - np.searchsorted(self.sampled[r], mine, side="right")) / RANK_SAMPLE
            out[at] = np.where(mine >= self.threshold[r], exact, np.maximum(np.rint(n_items * share), len(head)))
        return out


def _carve(data: TrainData, validation: TrainData | None) -> np.ndarray:
    """Mask of ``data``'s positives the ranker learns from: ``validation`` when it was carved from
    ``data``, else each user's last LABEL_FRACTION (users with >= 2 positives keep one)."""
    keys = data.users.astype(np.int64) * data.n_items + data.items
    if validation is not None and len(validation.users):
        other = validation.users.astype(np.int64) * data.n_items + validation.items
        held = np.isin(keys, other)
        if held.sum() == len(np.unique(other)):
            return held
    order = np.lexsort((data.items, data.timestamps, data.users))
    users = data.users[order]
    n = np.bincount(users, minlength=data.n_users)[users]
    position = np.arange(len(users)) - np.searchsorted(users, users)
    cut = np.where(n >= 2, np.maximum(1, np.ceil(np.round(LABEL_FRACTION * n, 9))).astype(int), 0)
    held = np.zeros(len(users), dtype=bool)
    held[order] = position >= n - cut
    return held


def _subset(data: TrainData, keep: np.ndarray) -> TrainData:
    from dataclasses import replace

    return replace(data, users=data.users[keep], items=data.items[keep], timestamps=data.timestamps[keep])

