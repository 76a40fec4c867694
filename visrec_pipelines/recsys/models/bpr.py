"""BPR-MF (Rendle et al. 2009): score(u, i) = p_u · q_i + b_i, trained on (u, i, j) triples to rank
each positive i above a sampled negative j.

Training is plain per-sample SGD, the algorithm of the paper and of Cornac's Cython loop, compiled
with numba: a positive (u, i) is drawn uniformly with replacement, a negative j uniformly among the
items u has not interacted with (rejection against u's sorted row), and p_u, q_i, q_j, b_i, b_j
take one step each. Why not torch here: BPR's step is a few dot products of length k, so a
mini-batch implementation spends its time streaming gathered rows through memory (measured: 12-15
ms per MovieLens epoch in torch vs ~5 ms for a compiled per-sample loop that keeps rows in cache).
The models with a real network (VBPR, deep, GRU, AMR) train in torch.

Users and items live in ONE table ``W`` of rows [p_u, 1] and [q_i, b_i], so the score is one inner
product and ``user_vectors() @ item_vectors().T`` serves it from a vector index. Early stopping
(``IterativeRanker``) watches the validation slice's NDCG@20 every ``eval_every`` epochs.
"""
from __future__ import annotations

from types import SimpleNamespace

import numba
import numpy as np

from ..base import TrainData
from ..iterative import IterativeRanker
from . import register


@register(order=50)
class BPR(IterativeRanker):
    name = "bpr"
    tuning = {"reg": [0.003, 0.01, 0.03]}

    def __init__(self, factors: int = 64, epochs: int = 200, lr: float = 0.05, reg: float = 0.01,
                 eval_every: int = 10, patience: int | None = 3, progress: bool = False, seed: int = 0):
        # threads=None: the numba loop is single-threaded and torch is not used
        super().__init__(epochs, eval_every, patience, threads=None, progress=progress, seed=seed)
        self.factors, self.lr, self.reg = factors, lr, reg

    def begin(self, data: TrainData, epochs: int, rng: np.random.Generator) -> SimpleNamespace:
        self.seen, self.n_users = data.matrix(), data.n_users             # sorted indices per user
        k, n_rows = self.factors, data.n_users + data.n_items
        W = ((rng.random((n_rows, k + 1), dtype=np.float32) - 0.5) / k)    # Cornac's init
        W[:data.n_users, k], W[data.n_users:, k] = 1.0, 0.0
        self.W = W
        return SimpleNamespace(users=data.users.astype(np.int32), items=data.items.astype(np.int32),
                               n_items=data.n_items, epoch_seeds=rng.integers(0, 2**31 - 1, epochs))

    def train_epoch(self, run: SimpleNamespace, epoch: int) -> None:
        _sgd_epoch(self.W, run.users, run.items, self.seen.indptr, self.seen.indices, self.n_users, run.n_items,
                   np.float32(self.lr), np.float32(self.reg), int(run.epoch_seeds[epoch - 1]))

    def snapshot(self, run: SimpleNamespace) -> np.ndarray:
        return self.W

    def restore(self, run: SimpleNamespace, state: np.ndarray) -> None:
        self.W = state

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.W[np.atleast_1d(users)] @ self.W[self.n_users:].T

    def user_vectors(self) -> np.ndarray:
        return self.W[:self.n_users].copy()

    def item_vectors(self) -> np.ndarray:
        return self.W[self.n_users:].copy()


@numba.njit(cache=True, fastmath=True, nogil=True)
def _sgd_epoch(W, users, items, indptr, indices, n_users, n_items, lr, reg, seed):
    """One epoch = len(users) SGD steps on sampled triples; W rows: users then items, the last
    column is 1 for users and b_i for items (the bias rides along the dot product).

    Random numbers come from an inline xorshift64* generator (Vigna 2016): numpy's bounded
    integers cost more than the rest of a step at k=64."""
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) | np.uint64(1)
    k = W.shape[1] - 1
    n = len(users)
    for _ in range(n):
        state, s = _draw(state, n)
        u, i = users[s], items[s]
        start, stop = indptr[u], indptr[u + 1]
        if stop - start >= n_items:
            continue                                   # the user has every item: no negative
        while True:                                    # reject j among u's positives (sorted)
            state, j = _draw(state, n_items)
            lo, hi = start, stop
            while lo < hi:
                mid = (lo + hi) >> 1
                if indices[mid] < j:
                    lo = mid + 1
                else:
                    hi = mid
            if lo == stop or indices[lo] != j:
                break
        pu, qi, qj = W[u], W[n_users + i], W[n_users + j]
        x = np.float32(0.0)
        for f in range(k + 1):                         # p_u · (q_i - q_j) + (b_i - b_j)
            x += pu[f] * (qi[f] - qj[f])
        z = np.float32(1.0) / (np.float32(1.0) + np.exp(x))                    # d/dx log σ(x) = σ(-x)
        for f in range(k):
            p, a, b = pu[f], qi[f], qj[f]
            pu[f] = p + lr * (z * (a - b) - reg * p)
            qi[f] = a + lr * (z * p - reg * a)
            qj[f] = b + lr * (-z * p - reg * b)
        qi[k] += lr * (z - reg * qi[k])
        qj[k] += lr * (-z - reg * qj[k])


@numba.njit(inline="always")
def _draw(state, n):
    """(next state, uniform int in [0, n)) — xorshift64*, scaled by the top 32 bits."""
    state ^= state >> np.uint64(12)
    state ^= state << np.uint64(25)
    state ^= state >> np.uint64(27)
    r = (state * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(32)
    return state, np.int64((r * np.uint64(n)) >> np.uint64(32))
