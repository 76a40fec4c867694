"""Offline metrics of ../shared/docs/evaluation.md — our own code, used for every ranker and peer.

For each test user, every catalogue item except the user's train positives is ranked (ties broken
by the lower item index). Metrics are averaged over test users (users with >= 1 test positive):

- recall@k     hits in the top k / the user's test positives
- ndcg@k       binary gains, 1/log2(rank + 1) discount; the ideal has min(|test|, k) hits
- precision@k  hits / k
- auc          over all non-train items: the fraction of (test positive, other candidate) pairs
               ordered correctly, ties counting 0.5 (exact, from mid-ranks: Mann-Whitney U)
- coverage@k   distinct items in all top-k lists / catalogue size (one number, not averaged)
- cold_recall@k  recall over the user's COLD test positives only (items with no train interaction
               at all); averaged over the users that have >= 1 cold test positive, NaN if none do
- diversity@k  intra-list diversity: 1 - mean pairwise cosine of the image vectors
               (``train.item_features``) of the top k; NaN without image features
- novelty@k    mean self-information -log2 p(i) of the top k, p(i) = (users with i in train + 1) /
               (train users + 1): the add-one keeps never-seen items finite (and most novel)

``per_user=True`` adds ``per_user``: a DataFrame indexed by test user (user index) with that user's
ndcg@k, recall@k, cold_recall@k (NaN without cold test positives) and train_positives — what a
paired significance test over users (``recsys.significance``) needs.

Users are scored ``batch_users`` at a time, so memory stays O(batch_users × n_items). Above
``max_users`` test users (``MAX_EVALUATED_USERS``, 10k) the metrics are averaged over a fixed random
sample of that many (seed 0: every ranker, the champion's re-scoring and early stopping see the same
users), so evaluation stops growing with the shop; at 10k users the standard error of one ranker's
NDCG@20 is ~0.003 (a promotion is decided by the gate's paired test over these same users, not by
that spread). ``users`` says how many were evaluated. The AUC, a
full sort of the catalogue per user, is averaged over at most ``MAX_AUC_USERS`` (2k) of them (a
fixed random subset; ``auc_users``): at 100k items that is seconds per ranker instead of minutes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from .base import Ranker

MAX_EVALUATED_USERS = 10_000
MAX_AUC_USERS = 2_000


def evaluate(ranker: Ranker, split, k: int = 20, batch_users: int = 256, with_auc: bool = True,
             per_user: bool = False, max_users: int | None = MAX_EVALUATED_USERS) -> dict:
    """``split``: anything with ``train`` and ``test`` TrainData (a ``Split``, or ``split.for_tuning()``).
    ``with_auc=False`` skips the AUC (a full sort per user), e.g. for early stopping."""
    train, test = split.train.matrix(), split.test.matrix()
    n_items = train.shape[1]
    item_users = np.asarray(train.sum(axis=0)).ravel()
    cold = item_users == 0
    self_information = -np.log2((item_users + 1.0) / (train.shape[0] + 1.0))
    vectors = _unit(split.train.item_features)
    test_users = np.flatnonzero(np.diff(test.indptr) > 0)
    if max_users is not None and len(test_users) > max_users:
        test_users = np.sort(np.random.default_rng(0).choice(test_users, max_users, replace=False))
    auc_users = test_users if len(test_users) <= MAX_AUC_USERS else \
        np.random.default_rng(1).choice(test_users, MAX_AUC_USERS, replace=False)
    auc_sum, auc_count = 0.0, 0
    sums = dict.fromkeys(("recall", "ndcg", "precision", "diversity", "novelty"), 0.0)
    cold_recall_sum, cold_users = 0.0, 0
    recommended = np.zeros(n_items, dtype=bool)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    users_ndcg, users_recall, users_cold = [], [], []

    for start in range(0, len(test_users), batch_users):
        users = test_users[start:start + batch_users]
        scores = _masked_scores(ranker, users, train)
        top = _top_k(scores, k)
        recommended[top.ravel()] = True
        relevant = test[users]
        hits = _lookup(relevant, top)                                   # (b, k) bool
        n_relevant = np.diff(relevant.indptr)
        recall = hits.sum(1) / n_relevant
        ndcg = (hits @ discounts[:hits.shape[1]]) / ideal[np.minimum(n_relevant, k) - 1]
        sums["recall"] += recall.sum()
        sums["precision"] += (hits.sum(1) / k).sum()
        sums["ndcg"] += ndcg.sum()
        sums["novelty"] += self_information[top].mean(axis=1).sum()
        if vectors is not None:
            sums["diversity"] += intra_list_diversity(vectors[top]).sum()
        if with_auc:
            rows = np.flatnonzero(np.isin(users, auc_users))
            if len(rows):
                auc_sum += _auc(scores[rows], relevant[rows], np.diff(train[users[rows]].indptr)).sum()
                auc_count += len(rows)

        relevant_cold = sp.csr_matrix(relevant.multiply(cold[None, :]))
        relevant_cold.eliminate_zeros()
        n_cold = np.diff(relevant_cold.indptr)
        has_cold = n_cold > 0
        cold_hits = _lookup(relevant_cold, top).sum(1)
        cold_recall_sum += (cold_hits[has_cold] / n_cold[has_cold]).sum()
        cold_users += int(has_cold.sum())
        users_ndcg.append(ndcg)
        users_recall.append(recall)
        users_cold.append(np.where(has_cold, cold_hits / np.maximum(n_cold, 1), np.nan))

    n = len(test_users)
    out = {f"recall@{k}": sums["recall"] / n, f"ndcg@{k}": sums["ndcg"] / n,
           f"precision@{k}": sums["precision"] / n, "auc": auc_sum / auc_count if auc_count else float("nan"),
           f"coverage@{k}": recommended.sum() / n_items,
           f"cold_recall@{k}": cold_recall_sum / cold_users if cold_users else float("nan"),
           f"diversity@{k}": float(sums["diversity"] / n) if vectors is not None else float("nan"),
           f"novelty@{k}": float(sums["novelty"] / n), "users": n, "cold_users": cold_users,
           "auc_users": auc_count}
    if per_user:
        joined = (np.concatenate(part) if part else np.zeros(0) for part in (users_ndcg, users_recall, users_cold))
        out["per_user"] = pd.DataFrame(
            dict(zip((f"ndcg@{k}", f"recall@{k}", f"cold_recall@{k}"), joined),
                 train_positives=np.diff(train.indptr)[test_users]),
            index=pd.Index(test_users, name="user"))
    return out


def intra_list_diversity(vectors: np.ndarray) -> np.ndarray:
    """(b, k, d) unit vectors of each list → (b,) 1 - mean cosine over the k(k-1) ordered pairs."""
    k = vectors.shape[1]
    if k < 2:
        return np.zeros(len(vectors))
    gram = np.einsum("bkd,bjd->bkj", vectors, vectors)
    off_diagonal = gram.sum(axis=(1, 2)) - np.trace(gram, axis1=1, axis2=2)
    return 1.0 - off_diagonal / (k * (k - 1))


def _unit(features: np.ndarray | None) -> np.ndarray | None:
    if features is None:
        return None
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def _masked_scores(ranker: Ranker, users: np.ndarray, train: sp.csr_matrix) -> np.ndarray:
    """Scores with the user's train positives at -inf (below every finite candidate score)."""
    scores = np.asarray(ranker.score(users), dtype=np.float64)
    big = np.finfo(np.float64).max
    scores = np.nan_to_num(scores, nan=-big, posinf=big, neginf=-big)   # keep candidates finite
    rows = train[users]
    scores[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
    return scores


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(b, k) item indices, best first; ties go to the lower item index.

    Same result as a stable full argsort, in O(n) per row: everything above the k-th largest score
    is in, then the lowest-indexed items tied with it fill the remaining places."""
    k = min(k, scores.shape[1])
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
    top = np.nonzero(chosen)[1].reshape(len(scores), k)               # ascending item index
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _lookup(relevant: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """(b, k) bool: is items[r, c] among row r's relevant items?"""
    rows = np.repeat(np.arange(items.shape[0]), items.shape[1])
    return np.asarray(relevant[rows, items.ravel()]).reshape(items.shape) > 0


def _auc(scores: np.ndarray, relevant: sp.csr_matrix, n_train: np.ndarray) -> np.ndarray:
    """Per-user AUC over candidates (non-train items) via mid-ranks.

    Train items sit at -inf, so they occupy ranks 1..n_train; a candidate's rank among candidates
    is its overall mid-rank minus n_train. U = sum of positives' ranks - P(P+1)/2 counts correctly
    ordered (positive, negative) pairs with ties as 0.5."""
    ranks = rankdata(scores, method="average", axis=1)
    rows = np.repeat(np.arange(len(n_train)), np.diff(relevant.indptr))
    positive_ranks = ranks[rows, relevant.indices] - n_train[rows]
    n_pos = np.diff(relevant.indptr).astype(np.float64)
    n_neg = scores.shape[1] - n_train - n_pos
    u = np.bincount(rows, weights=positive_ranks, minlength=len(n_train)) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_neg > 0, u / (n_pos * n_neg), 0.5)
