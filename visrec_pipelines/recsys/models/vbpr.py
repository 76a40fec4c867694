"""VBPR (He & McAuley 2016): score(u, i) = β_i + γ_u·γ_i + θ_u·(E f_i) + β'·f_i, with f_i the
item's image features and E a learned projection, trained with the BPR loss.

The visual terms need no interaction on the item, so cold items (no train positive) are ranked by
them alone: their γ_i and β_i are zero and never updated.

Speed: large batches of triples sampled a whole epoch at once (``TripleSampler``) and a fused Adam.
E f and β'·f (β' is E's extra column) come from ONE (items × d) @ (d × k2+1) product per step,
over every item a batch can touch (the warm items, or all with ``negatives="all"``) when a batch
touches a good share of them, else over the batch's distinct items. Where the CPU multiplies
bfloat16 in hardware (AMX), that product runs in bfloat16 (~3× faster here; scores use float32).
Losses and regularisers are Cornac's (sums over the batch), so its hyper-parameters mean the same.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch.nn.functional import logsigmoid

from ..base import TrainData
from ..iterative import IterativeRanker
from . import register
from .sampling import TripleSampler


class VisualProjection(torch.autograd.Function):
    """rows @ projection; the backward's rowsᵀ @ grad uses a pre-transposed contiguous copy (on a
    transposed view the bfloat16 product is several times slower)."""

    @staticmethod
    def forward(ctx, rows, rows_t, projection):
        ctx.save_for_backward(rows_t)
        return rows @ projection

    @staticmethod
    def backward(ctx, grad):
        (rows_t,) = ctx.saved_tensors
        return None, None, rows_t @ grad.to(rows_t.dtype)


MIN_STEPS = 8


@register(order=60)
class VBPR(IterativeRanker):
    name = "vbpr"
    needs = frozenset({"image_features"})
    tuning = {"reg": [0.01, 0.1]}
    # Tuned for training speed and single-threaded by default, where its scatter-adds already run
    # in order: it has always trained without torch's deterministic mode and its extra work.
    deterministic_kernels = False

    def __init__(self, factors: int = 32, visual_factors: int = 32, epochs: int = 40, lr: float = 0.005,
                 reg: float = 0.01, reg_bias: float = 0.01, reg_visual: float = 0.0,
                 batch_size: int = 4096, negatives: str = "warm", feature_dtype: str = "auto",
                 eval_every: int = 5, patience: int | None = 3, threads: int = 1,
                 progress: bool = False, seed: int = 0):
        super().__init__(epochs, eval_every, patience, threads, progress, seed)
        if negatives not in ("all", "warm"):
            raise ValueError("negatives: 'all' (any catalogue item) or 'warm' (items with a positive)")
        self.factors, self.visual_factors, self.lr = factors, visual_factors, lr
        self.reg, self.reg_bias, self.reg_visual = reg, reg_bias, reg_visual
        self.batch_size, self.negatives, self.feature_dtype = batch_size, negatives, feature_dtype

    def begin(self, data: TrainData, epochs: int, rng: np.random.Generator) -> SimpleNamespace:
        if data.item_features is None:
            raise ValueError("VBPR needs TrainData.item_features (image embeddings)")
        self.seen = data.matrix()
        features = torch.from_numpy(np.ascontiguousarray(data.item_features, dtype=np.float32))
        warm = np.bincount(data.items, minlength=data.n_items) > 0
        trainable = np.flatnonzero(warm) if self.negatives == "warm" else np.arange(data.n_items)
        sampler = TripleSampler(data, rng, negative_pool=trainable if self.negatives == "warm" else None)
        # the items a batch can touch, as rows of a (trainable × d) table in the training dtype
        row_of = torch.full((data.n_items,), -1, dtype=torch.int64)
        row_of[trainable] = torch.arange(len(trainable))
        rows = features[trainable].to(self._training_dtype())
        params = self._init_params(data.n_users, data.n_items, features.shape[1], warm)
        # at least MIN_STEPS Adam steps an epoch: a small shop's few thousand positives in one or
        # two batches would barely move the parameters before early stopping looks
        n_batches = max(MIN_STEPS, -(-len(data.users) // self.batch_size))
        return SimpleNamespace(features=features, sampler=sampler, row_of=row_of, rows=(rows, rows.T.contiguous()),
                               params=params, optimiser=torch.optim.Adam(params.values(), lr=self.lr, fused=True),
                               cold=torch.from_numpy(~warm),
                               n_batches=min(n_batches, max(1, len(data.users) // 64)))

    def train_epoch(self, run: SimpleNamespace, epoch: int) -> None:
        users, positives, negatives = (torch.from_numpy(a) for a in run.sampler.epoch())
        params, row_of = run.params, run.row_of
        for batch in torch.tensor_split(torch.arange(len(users)), run.n_batches):
            u, i, j = users[batch], positives[batch], negatives[batch]
            loss = self._loss(params, run.rows, u, i, j, row_of[i], row_of[j])
            run.optimiser.zero_grad()
            loss.backward()
            if self.negatives == "all":                # cold items keep γ_i = β_i = 0
                params["gamma_item"].grad[run.cold] = 0.0
                params["beta_item"].grad[run.cold] = 0.0
            run.optimiser.step()

    def snapshot(self, run: SimpleNamespace) -> dict:
        return {name: p.detach() for name, p in run.params.items()}

    @torch.no_grad()
    def restore(self, run: SimpleNamespace, state: dict) -> None:
        for name, p in run.params.items():
            p.copy_(state[name])

    def export(self, run: SimpleNamespace) -> None:
        self._export(run.params, run.features)

    def _init_params(self, n_users: int, n_items: int, dim: int, warm: np.ndarray) -> dict:
        generator = torch.Generator().manual_seed(self.seed)

        def xavier(rows, cols):
            bound = np.sqrt(6.0 / (rows + cols))
            return (torch.rand(rows, cols, generator=generator) * 2 - 1) * bound

        gamma_item = xavier(n_items, self.factors)
        gamma_item[torch.from_numpy(~warm)] = 0.0
        params = {"gamma_user": xavier(n_users, self.factors), "gamma_item": gamma_item,
                  "theta_user": xavier(n_users, self.visual_factors), "beta_item": torch.zeros(n_items),
                  # E with β' as its last column: one product gives θ-space and the visual bias
                  "projection": xavier(dim, self.visual_factors + 1)}
        return {name: p.requires_grad_() for name, p in params.items()}

    def _training_dtype(self) -> torch.dtype:
        if self.feature_dtype == "auto":
            has_amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
            return torch.bfloat16 if has_amx else torch.float32
        return getattr(torch, self.feature_dtype)

    def _visual(self, p: dict, rows: tuple, row_i, row_j) -> torch.Tensor:
        """E f_i - E f_j and β'·(f_i - f_j), as (batch, k2 + 1)."""
        (table, table_t), n = rows, len(row_i)
        projection = p["projection"].to(table.dtype)
        if 4 * n >= len(table):          # a batch touches a good share of the table: project it all
            visual = VisualProjection.apply(table, table_t, projection).float()
            return visual[row_i] - visual[row_j]
        distinct, where = torch.unique(torch.cat([row_i, row_j]), return_inverse=True)
        visual = (table[distinct] @ projection).float()[where]
        return visual[:n] - visual[n:]

    def _loss(self, p: dict, rows: tuple, users, positives, negatives, row_i, row_j) -> torch.Tensor:
        visual_diff = self._visual(p, rows, row_i, row_j)
        gamma_u, theta_u = p["gamma_user"][users], p["theta_user"][users]
        gamma_i, gamma_j = p["gamma_item"][positives], p["gamma_item"][negatives]
        beta_i, beta_j = p["beta_item"][positives], p["beta_item"][negatives]
        x = (beta_i - beta_j + (gamma_u * (gamma_i - gamma_j)).sum(1)
             + (theta_u * visual_diff[:, :-1]).sum(1) + visual_diff[:, -1])
        reg = (self.reg * (gamma_u.square().sum() + gamma_i.square().sum() + gamma_j.square().sum()
                           + theta_u.square().sum())
               + self.reg_bias * (beta_i.square().sum() + beta_j.square().sum() / 10)
               + self.reg_visual * p["projection"].square().sum()) / 2
        return reg - logsigmoid(x).sum()

    def _export(self, params: dict, features: torch.Tensor) -> None:
        """Numpy copies for scoring: γ, θ per user; γ, E f, β, β'·f per item (and E, β' to
        score new items' features later)."""
        with torch.no_grad():
            visual = features @ params["projection"]
        self.projection = params["projection"].detach().numpy().copy()
        self.gamma_user = params["gamma_user"].detach().numpy().copy()
        self.theta_user = params["theta_user"].detach().numpy().copy()
        self.gamma_item = params["gamma_item"].detach().numpy().copy()
        self.beta_item = params["beta_item"].detach().numpy().copy()
        self.theta_item, self.visual_bias = visual[:, :-1].numpy(), visual[:, -1].numpy()

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.atleast_1d(users)
        return (self.gamma_user[users] @ self.gamma_item.T + self.theta_user[users] @ self.theta_item.T
                + self.beta_item + self.visual_bias)

    def user_vectors(self) -> np.ndarray:
        ones = np.ones((len(self.gamma_user), 1), dtype=np.float32)
        return np.hstack([self.gamma_user, self.theta_user, ones, ones])

    def item_vectors(self) -> np.ndarray:
        return np.hstack([self.gamma_item, self.theta_item, self.beta_item[:, None],
                          self.visual_bias[:, None]])
