"""What the server serves, and the queries the API answers from it.

``ServingState`` is immutable once built (``sources.read_state`` builds it; ``manager`` swaps it
in): the champion, the item catalogue, the visual index and everything precomputed from them. A
request reads the current state once and works on that object only, so in-flight requests finish
on the old state while new ones see the new, and none sees a mixture. Nothing here reads a file.
"""
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..index.ann import Filter
from ..recsys.diversity import diversify
from ..settings import Settings
from . import reasons
from .catalogue import ItemCatalogue
from .champion import Champion
from .problems import Unavailable
from .row_maps import RowMaps
from .similar import RowFilter, SimilarItems, fast_top_k


class NotReady(Unavailable):
    """The component a request needs (champion, index, encoder) is not loaded yet (503)."""


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
DIVERSITY_POOL = 5  # ?diversity= re-ranks this many times k of the best items (at most TOP_CACHED)
MAX_PUSHED_BY = 4  # signal groups shown per item in ``because.pushed_by``
PREFILL_BATCH = 128  # users scored together when a champion's contexts are prefilled at load
PREFILL_EXPLAINED = 12  # ... with the look-alikes (and reasons) of this many of each user's best (a page)
# a tag filter's item vectors up to this size are kept as one block and scored exactly (a category
# of 5k items x 64 factors: 1.3 MB, ~90 us; the IVF with the tags' bitmap took ~300 us at 100k items)
FILTER_BLOCK_MAX_BYTES = 4 * 2**20
log = logging.getLogger(__name__)


def _positions_in(sorted_rows: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions in ``sorted_rows`` of the values of sorted ``wanted`` it holds."""
    at = np.searchsorted(sorted_rows, wanted)
    inside = at < len(sorted_rows)
    at = at[inside]
    return at[sorted_rows[at] == wanted[inside]]


def _reason_entry(entry: dict) -> dict:
    """A ranker's ``explain`` entry as a context keeps it: the nominating sources, the largest pushes."""
    pushed = list(entry["pushed_by"].items())[:MAX_PUSHED_BY]
    return {"sources": entry["nominated_by"], "pushed_by": {group: round(value, 4) for group, value in pushed}}


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
    explained: dict = field(default_factory=dict)   # champion row -> sources / pushed_by (two-stage)
    scores: np.ndarray | None = None   # every champion item's score (excluded: -inf), when kept (see _keep_scores)


class ServingState:
    """Champion + catalogue + index, and the queries the API answers from them (read-only)."""

    def __init__(self, settings: Settings, champion: Champion | None, index: IndexSnapshot | None,
                 catalogue: ItemCatalogue, rows: RowMaps, histories: dict[str, np.ndarray],
                 index_encoder_id: str | None, problems: tuple[str, ...] = (), text_search=None,
                 space=None):
        self.settings, self.champion, self.index = settings, champion, index
        self.text_search = text_search        # vision.text_search.TextSearch, or None: no /search/text
        self.space = space                    # vision.similarity.SimilaritySpace of the index's vectors
        self._text_rows = None if text_search is None else \
            np.asarray([catalogue.row.get(i, -1) for i in text_search.item_ids.tolist()], dtype=np.intp)
        self.similar = index.similar if index is not None else None
        self.catalogue, self.dataset, self.rows = catalogue, catalogue.dataset, rows
        self.histories = histories            # user id -> catalogue rows, most recent first
        self.index_encoder_id = index_encoder_id   # the encoder the index was embedded with, if known
        self.popularity = rows.popularity
        self.problems = list(problems)        # what this state had to do without (see /status)
        shown = np.flatnonzero(rows.showable)  # cold start: popular among the items that may be shown
        order, self.cold_ranks = reasons.diverse_popular_order(self.popularity[shown],
                                                               [catalogue.categories[r] for r in shown.tolist()])
        self.cold_rows = shown[order]
        self.best_items = None if champion is None else \
            champion.best_items_index(rows.hidden_bias == 0, TOP_CACHED, settings.ann_min_items)
        self._context = lru_cache(maxsize=settings.user_cache_size)(self._user_context)
        self._mask = lru_cache(maxsize=256)(self._champion_mask)
        self._candidates = lru_cache(maxsize=256)(self._champion_candidates)
        self._cold_order = lru_cache(maxsize=256)(self._cold_order_for)
        self._champion_filter = lru_cache(maxsize=256)(lambda tags: Filter(self._mask(tags)))
        self._index_masks = lru_cache(maxsize=256)(self._index_mask)
        self._filter_block = lru_cache(maxsize=64)(self._champion_filter_block)
        self._prefilled: dict[int, _UserContext] = {}
        # a champion that scores per user (two_stage, ~10 ms a user) would score the user again for a
        # tag filter their best 200 cannot answer, and build their candidates again for the reasons;
        # so each context keeps its whole score row, when every known user's row fits the budget
        # (10k items x 1.5k users: 60 MB), and the ranker the prefilled users' candidate pairs
        # (~70 KB a user) within the same budget
        self._keep_scores = champion is not None and champion.user_vectors is None and \
            4 * champion.n_items * champion.n_users <= settings.user_scores_budget_mb * 2**20
        keep_pairs = getattr(champion.bundle.ranker, "keep_pairs", None) if champion is not None else None
        if keep_pairs is not None:   # and their candidates' features: reasons for a filter's picks, no rebuild
            keep_pairs(settings.user_scores_budget_mb * 2**20)
        self.prefill_report = self._prefill(settings.serving_prefill_seconds)

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

    # --- users ----------------------------------------------------------------------------------
    def history_rows(self, user_id: str) -> np.ndarray:
        return self.histories.get(user_id, np.empty(0, dtype=np.intp))

    def users(self, limit: int) -> list[dict]:
        """Users the champion knows, the longest histories first (for the gallery)."""
        champion = self._need_champion()
        ids = champion.bundle.user_ids.tolist()
        sizes = [len(self.histories.get(u, ())) for u in ids]
        order = sorted(range(len(ids)), key=lambda i: (-sizes[i], ids[i]))[:limit]
        return [{"user_id": ids[i], "history": sizes[i]} for i in order]

    def history(self, user_id: str, limit: int) -> dict:
        rows = self.history_rows(user_id)
        known = self.champion is not None and self.champion.user_row(user_id) is not None
        return {"user_id": user_id, "known_user": known, "total": int(len(rows)),
                "items": [self.catalogue.card(r) for r in rows[:limit].tolist()]}

    def item(self, item_id: str) -> dict:
        row = self.catalogue.row.get(item_id)
        if row is None:
            raise NotFound(f"item {item_id!r} is not in the catalogue of dataset {self.settings.dataset!r}")
        return {**self.catalogue.card(row), "indexed": bool(self.catalogue.vec_row[row] >= 0),
                "popularity": float(self.popularity[row])}

    # --- recommendations ------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int, tags: list[str], diversity: float = 0.0) -> dict:
        """``diversity`` > 0: the best DIVERSITY_POOL × k items re-ranked by MMR over their image
        vectors with that weight (``recsys.diversity``)."""
        champion = self._need_champion()
        user_row = champion.user_row(user_id)
        pool = k if diversity == 0 else min(max(DIVERSITY_POOL * k, k), TOP_CACHED)
        # ?diversity= chooses k of the pool by their rows and scores before any item (and its
        # reasons, which cost a two-stage champion a model call each) is built
        choose = None if diversity == 0 else (lambda rows, scores: self._diverse_positions(rows, scores, k, diversity))
        if user_row is None:
            items = self._cold_start(pool, tags, choose)
        else:
            items = self._known(champion, user_id, user_row, pool, tags, choose)
        return {"user_id": user_id, "known_user": user_row is not None, "cold_start": user_row is None,
                "champion_version": champion.version, "ranker": champion.ranker_name,
                "index_version": self.similar.version if self.similar is not None else None,
                "tags": tags, "k": k, "diversity": diversity, "items": items}

    def _diverse_positions(self, rows: list[int], scores: list[float], k: int, diversity: float) -> list[int]:
        """Positions of ``k`` of these catalogue rows chosen by MMR over their image vectors (no
        vector: like nothing), in the order chosen."""
        if self.similar is None or len(rows) <= 1:
            return list(range(min(k, len(rows))))
        vectors = self.similar.index.vectors
        index_rows = self.catalogue.vec_row[np.asarray(rows, dtype=np.intp)]
        has = index_rows >= 0
        pool = np.zeros((len(rows), vectors.shape[1]), dtype=np.float32)
        pool[has] = np.take(vectors, index_rows[has], axis=0)
        return diversify(np.arange(len(rows)), np.asarray(scores), pool, k, diversity).tolist()

    def _user_context(self, user_row: int, user_id: str, scores: np.ndarray | None = None,
                      searched: tuple[np.ndarray, np.ndarray] | None = None) -> "_UserContext":
        """What a known user's requests share until the next swap: the champion's best items for
        them (exclusions applied) and, for each, the history item it looks most like. Built on the
        user's first request, then cached (LRU) with this state, unless prefilled at load, which
        passes the user's ``scores`` or, on a large catalogue, the IVF's (rows, scores) ``searched``
        for at least TOP_CACHED + the excluded."""
        champion, cat, maps = self.champion, self.catalogue, self.rows
        history = self.history_rows(user_id)
        excluded = self._excluded(user_row, history)
        if self.best_items is not None:       # a large catalogue: the IVF's best, past the excluded
            found, values = searched or self.best_items.search(champion.user_vectors[user_row],
                                                               TOP_CACHED + len(excluded))
            keep = ~np.isin(found, excluded)
            best, values, complete = found[keep][:TOP_CACHED], values[keep][:TOP_CACHED], False
        else:
            scores = champion.scores(user_row) if scores is None else scores
            scores += maps.hidden_bias
            scores[excluded] = -np.inf                       # never what they already had
            best = fast_top_k(scores, TOP_CACHED)
            best = best[np.isfinite(scores[best])]
            values, complete = scores[best], len(best) == int(np.isfinite(scores).sum())
        recent = history[: self.settings.history_for_reasons]
        return _UserContext(top_rows=best.astype(np.int32), top_cat=maps.champ_to_cat[best].tolist(),
                            top_values=values.tolist(), twins=[UNKNOWN_TWIN] * len(best),
                            twin_similarity=[0.0] * len(best), excluded=excluded, complete=complete,
                            tag_ranks=reasons.history_tag_ranks(cat.tags[r] for r in recent.tolist()),
                            recent_rows=recent, scores=scores if self._keep_scores else None)

    def _excluded(self, user_row: int, history: np.ndarray) -> np.ndarray:
        """Sorted champion rows never recommended to this user: what they already had."""
        in_champion = self.rows.cat_to_champ[history]
        return np.union1d(self.champion.seen_items(user_row), in_champion[in_champion >= 0])

    def _find_twins(self, context: "_UserContext", positions: list[int]) -> None:
        """Fill in the look-alikes of these positions of the user's best (once per (user, item))."""
        missing = [p for p in positions if context.twins[p] == UNKNOWN_TWIN]
        if missing:
            found, cosine = self._looks_like(np.asarray([context.top_cat[p] for p in missing]), context.recent_rows)
            for p, twin, value in zip(missing, found.tolist(), cosine.tolist()):
                context.twins[p], context.twin_similarity[p] = twin, value

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

    def _champion_filter_block(self, tags: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """(sorted champion rows, their item vectors in one contiguous block) of the shown items
        carrying ``tags``, for a factorised champion: a filtered request then scores them with one
        product, exactly, instead of gathering them or searching the IVF with the tags' bitmap. None
        above FILTER_BLOCK_MAX_BYTES (cached per tag set, so at most 64 of them are held)."""
        champion = self.champion
        if champion.item_vectors is None:
            return None
        rows = self._candidates(tags)
        rows = rows[self.rows.hidden_bias[rows] == 0]
        if rows.size * champion.item_vectors.shape[1] * 4 > FILTER_BLOCK_MAX_BYTES:
            return None
        return rows, np.ascontiguousarray(champion.item_vectors[rows])

    def _champion_candidates(self, tags: tuple[str, ...]) -> np.ndarray:
        """Sorted champion item rows carrying every tag (cached per tag set)."""
        rows = self.rows.cat_to_champ[self.catalogue.rows_with_tags(list(tags))]
        return np.sort(rows[rows >= 0])

    def _known(self, champion: Champion, user_id: str, user_row: int, k: int, tags: list[str],
               choose=None) -> list[dict]:
        """The user's best ``k`` with their reasons; ``choose(rows, scores)``: the positions of the
        ones to show, in order (?diversity=), picked before looks and reasons are found."""
        cat, maps = self.catalogue, self.rows
        context = self._prefilled.get(user_row) or self._context(user_row, user_id)
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
            if choose is not None:
                picked = [picked[i] for i in choose([context.top_cat[p] for p in picked],
                                                    [context.top_values[p] for p in picked])]
            rows = [context.top_cat[p] for p in picked]
            values = [context.top_values[p] for p in picked]
            self._find_twins(context, picked)     # found when first shown (or prefilled)
            twins = [context.twins[p] for p in picked]
            similarity = [context.twin_similarity[p] for p in picked]
            champion_rows = [int(context.top_rows[p]) for p in picked]
        else:   # the filter left too few of the cached best: the filter's own best
            best, values = self._filtered_best(champion, context, user_row, k, tuple(tags))
            if choose is not None:
                chosen = np.asarray(choose(maps.champ_to_cat[best].tolist(), values.tolist()), dtype=np.intp)
                best, values = best[chosen], values[chosen]
            found = maps.champ_to_cat[best]
            champion_rows = best.tolist()
            twins, similarity = self._looks_like(found, context.recent_rows)
            rows, values, twins, similarity = found.tolist(), values.tolist(), twins.tolist(), similarity.tolist()
        items = []
        tag_ranks = context.tag_ranks
        explained = self._explained(champion, context, user_row, champion_rows, values)
        for row, value, twin, cosine, why in zip(rows, values, twins, similarity, explained):
            shared = reasons.shared_tags(cat.tags[row], tag_ranks)
            twin_title = cat.titles[twin] if twin >= 0 else None
            items.append({**cat.card(row), "score": value,
                          "reason": reasons.known_user_reason(twin_title, cosine, shared, champion.ranker_name,
                                                              why.get("sources")),
                          "because": {"looks_like": None if twin < 0 else
                                      {"item_id": cat.item_ids[twin], "title": twin_title,
                                       "similarity": round(cosine, 4)},
                                      "shared_tags": shared, **why}})
        return items

    def _filtered_best(self, champion: Champion, context: "_UserContext", user_row: int, k: int,
                       tags: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(champion rows, scores) of the user's best k carrying ``tags``, exclusions applied: a
        factorised champion scores the tags' own block of item vectors (``_filter_block``); a block
        too large for that is, on a large catalogue, the IVF searched with the tags' bitmap;
        otherwise every candidate is scored (or taken from the user's kept score row)."""
        block = self._filter_block(tags) if tags else None
        if block is None and self.best_items is not None and tags:
            found, values = self.best_items.search(champion.user_vectors[user_row], k + len(context.excluded),
                                                   self._champion_filter(tags))
            keep = ~np.isin(found, context.excluded)
            return found[keep][:k], values[keep][:k]
        if block is not None:                # hidden items are not in the block
            scored, vectors = block
            scores = vectors @ champion.user_vectors[user_row]
            scores[_positions_in(scored, context.excluded)] = -np.inf
        else:
            candidates = self._candidates(tags) if tags else None
            scored = candidates if candidates is not None else np.arange(champion.n_items)
            if context.scores is not None:   # kept with the context: exclusions already applied
                scores = context.scores[scored]
            else:
                scores = champion.scores(user_row, candidates)
                scores += self.rows.hidden_bias[scored]
                scores[np.isin(scored, context.excluded, assume_unique=True)] = -np.inf
        best = fast_top_k(scores, k)
        best = best[np.isfinite(scores[best])]
        return scored[best], scores[best]

    def _cold_order_for(self, tags: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The cold-start order (rows, rank within category) of the items carrying ``tags``
        (cached per tag set: a mask over a large catalogue costs more than the answer)."""
        rows, ranks = self.cold_rows, self.cold_ranks
        if tags:
            mask = np.zeros(len(self.catalogue), dtype=bool)
            mask[self.catalogue.rows_with_tags(list(tags))] = True
            keep = mask[rows]
            rows, ranks = rows[keep], ranks[keep]
        return rows, ranks

    def _prefill(self, budget_s: float) -> dict | None:
        """The champion's known users get their contexts built here, in batches, the longest
        histories first, until ``budget_s`` seconds have gone; the rest are built on their first
        request as before. Same answers, without a first request that costs several times a later
        one (~10 ms for a two-stage champion, which also gets the reasons for the first
        PREFILL_EXPLAINED items; ~0.7 ms for a factorised one at 100k items, whose batch goes
        through the IVF at once). The look-alikes of the first PREFILL_EXPLAINED come too."""
        champion = self.champion
        if champion is None or budget_s <= 0:
            return None
        started = time.perf_counter()
        ids = champion.bundle.user_ids.tolist()
        order = sorted(range(len(ids)), key=lambda r: (-len(self.histories.get(ids[r], ())), r))
        order = order[: self.settings.user_cache_size]
        score_and_explain = getattr(champion.bundle.ranker, "score_and_explain", None)
        done = 0
        for start in range(0, len(order), PREFILL_BATCH):
            if time.perf_counter() - started > budget_s:
                break
            rows = np.asarray(order[start:start + PREFILL_BATCH])
            contexts, explained = self._prefill_batch(rows, [ids[r] for r in rows.tolist()], score_and_explain)
            for context, entries in zip(contexts, explained):
                first = list(range(min(PREFILL_EXPLAINED, len(context.top_rows))))
                self._find_twins(context, first)
                shown = set(context.top_rows[:PREFILL_EXPLAINED].tolist())   # served order may differ:
                for entry in entries:                                       # the rest come lazily
                    if entry["item"] in shown:
                        context.explained[entry["item"]] = _reason_entry(entry)
            self._prefilled.update(zip(rows.tolist(), contexts))
            done += len(rows)
        seconds = time.perf_counter() - started
        log.info("prefilled %d of %d users' best items and reasons in %.1f s", done, len(ids), seconds)
        return {"users": done, "of": len(ids), "seconds": round(seconds, 2)}

    def _prefill_batch(self, rows: np.ndarray, user_ids: list[str], score_and_explain) -> tuple[list, list]:
        """Contexts for these users, scored together, and the ranker's reasons for its own best
        PREFILL_EXPLAINED of each when it gives them (empty lists otherwise)."""
        champion, none = self.champion, [[] for _ in user_ids]
        if self.best_items is not None:       # one IVF search for the batch, deep enough for everyone's exclusions
            # at least as deep as any user's exclusions (their union is never longer than the two)
            deepest = max(len(champion.seen_items(r)) + len(self.history_rows(u))
                          for r, u in zip(rows.tolist(), user_ids))
            scores, found = self.best_items.search_many(champion.user_vectors[rows], TOP_CACHED + deepest,
                                                        self.best_items.nprobe)
            searched = [(f[f >= 0], s[f >= 0]) for f, s in zip(found, scores)]
            return [self._user_context(r, u, searched=hit)
                    for r, u, hit in zip(rows.tolist(), user_ids, searched)], none
        if score_and_explain is not None:     # the ranker's own best explained with the same pairs
            scores, explained = score_and_explain(rows, PREFILL_EXPLAINED)
        else:
            scores, explained = champion.scores_many(rows), none
        return [self._user_context(r, u, row_scores) for r, u, row_scores in zip(rows.tolist(), user_ids, scores)], \
            explained

    @staticmethod
    def _explained(champion: Champion, context: "_UserContext", user_row: int, champion_rows: list,
                   values: list) -> list[dict]:
        """Champions that can say why (the two-stage ranker's ``explain``): per item, the sources that
        nominated it and what pushed it up, found once per (user, item); {} for other rankers. An
        item scored below the ranker's CANDIDATE_FLOOR was found by no source: said without a call
        (which would build the user's candidates again, ~10 ms, for a tag filter's popular picks)."""
        ranker = champion.bundle.ranker
        explain = getattr(ranker, "explain", None)
        if explain is None:
            return [{}] * len(champion_rows)
        floor = getattr(ranker, "CANDIDATE_FLOOR", None)
        if floor is not None:
            for row, value in zip(champion_rows, values):
                if value < floor and row not in context.explained:
                    context.explained[row] = {"sources": {}, "pushed_by": {}}
        missing = [r for r in champion_rows if r not in context.explained]
        if missing:
            for row, entry in zip(missing, explain(user_row, np.asarray(missing))):
                context.explained[row] = _reason_entry(entry)
        return [context.explained[r] for r in champion_rows]

    def _cold_start(self, k: int, tags: list[str], choose=None) -> list[dict]:
        cat = self.catalogue
        rows, ranks = self._cold_order(tuple(tags))
        rows, ranks = rows[:k].tolist(), ranks[:k].tolist()
        if choose is not None:
            chosen = choose(rows, self.popularity[rows].tolist())
            rows, ranks = [rows[i] for i in chosen], [ranks[i] for i in chosen]
        return [{**cat.card(r), "score": float(self.popularity[r]),
                 "reason": reasons.cold_start_reason(cat.categories[r], rank),
                 "because": {"looks_like": None, "shared_tags": [], "popularity": float(self.popularity[r])}}
                for r, rank in zip(rows, ranks)]

    # --- the visual index -----------------------------------------------------------------------
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
        found, scores = similar.similar_rows(index_row, k, self._index_filter(tags))
        query_tags = cat.tag_sets[row]
        items = []
        for r, score in zip(self.rows.index_to_cat[found].tolist(), scores.tolist()):
            shared = [t for t in cat.tags[r] if t in query_tags][: reasons.MAX_SHARED]
            items.append({**cat.card(r), "score": score, "reason": reasons.similar_reason(shared, score),
                          "because": {"shared_tags": shared}})
        return {"item": cat.card(row), "index_version": similar.version, "tags": tags, "k": k, "items": items}

    def search_vector(self, vector: np.ndarray, k: int, tags: list[str]) -> dict:
        similar = self._need_index()
        cat = self.catalogue
        found, scores = similar.search_rows(vector, k, self._index_filter(tags))
        items = [{**cat.card(r), "score": s, "reason": f"looks like your picture ({s:.2f})"}
                 for r, s in zip(self.rows.index_to_cat[found].tolist(), scores.tolist()) if r >= 0]
        return {"index_version": similar.version, "tags": tags, "k": k, "items": items}

    def search_text(self, query: str, k: int, tags: list[str]) -> dict:
        """Items whose title, description or tags match the query, best first (showable ones only)."""
        if self.text_search is None:
            raise NotReady("no text search index is loaded yet (the text_search_index asset writes it)")
        scores = self.text_search.scores(query)
        rows = self._text_rows
        keep = rows >= 0
        keep[keep] = self.rows.showable[rows[keep]]
        allowed = self.catalogue.rows_with_tags(tags)
        if allowed is not None:
            keep[keep] = np.isin(rows[keep], allowed, assume_unique=True)
        candidates = np.flatnonzero(keep)
        best = candidates[fast_top_k(scores[candidates], k)] if len(candidates) else candidates
        best = best[scores[best] > 0]   # nothing in common with the query: not a match
        items = [{**self.catalogue.card(r), "score": float(scores[b]), "reason": f"matches \"{query}\""}
                 for b, r in zip(best.tolist(), rows[best].tolist())]
        return {"query": query, "tags": tags, "k": k, "items": items}

    def _index_filter(self, tags: list[str]) -> RowFilter | None:
        """The index rows the catalogue lists and carrying every tag, or None for no filter."""
        if not tags and self.rows.listed_index_rows is None:
            return None
        return self._index_masks(tuple(tags))

    def _index_mask(self, tags: tuple[str, ...]):
        listed = self.rows.listed_index_rows
        rows = self.similar.index.candidate_rows(tags=list(tags)) if tags else listed
        if tags and listed is not None:
            rows = np.intersect1d(rows, listed, assume_unique=True)
        mask = np.zeros(len(self.similar), dtype=bool)
        mask[rows] = True
        return RowFilter(mask, rows)
