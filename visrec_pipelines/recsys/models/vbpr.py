"""VBPR (He & McAuley 2016): score(u, i) = β_i + γ_u·γ_i + θ_u·(E f_i) + β'·f_i, with f_i the
item's image features and E a learned projection, trained with the BPR loss.

The visual terms need no interaction on the item, so cold items (no train positive) are ranked by
them alone: their γ_i and β_i are zero and never updated.

Speed: large batches of triples sampled a whole epoch at once (``TripleSampler``); per step, E f
is computed only for the distinct items of the batch (one (n_distinct × d) @ (d × k2+1) product,
with β' as E's extra column), and Adam updates everything. Losses and regularisers are those of
Cornac's VBPR (sums over the batch), so its hyper-parameters mean the same here.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn.functional import logsigmoid
from tqdm import tqdm

from ..base import Ranker, TrainData
from .sampling import EarlyStopping, TripleSampler, validation_metric


class VBPR(Ranker):
    name = "vbpr"

    def __init__(self, factors: int = 32, visual_factors: int = 32, epochs: int = 40, lr: float = 0.02,
                 reg: float = 0.01, reg_bias: float = 0.01, reg_visual: float = 0.0,
                 batch_size: int = 4096, negatives: str = "all", item_dropout: float = 0.0,
                 eval_every: int = 5,
                 patience: int | None = 3, threads: int = 2, progress: bool = False, seed: int = 0):
        super().__init__(seed)
        if negatives not in ("all", "warm"):
            raise ValueError("negatives must be 'all' (any catalogue item) or 'warm' (items with a positive)")
        self.factors, self.visual_factors, self.epochs, self.lr = factors, visual_factors, epochs, lr
        self.reg, self.reg_bias, self.reg_visual = reg, reg_bias, reg_visual
        self.batch_size, self.negatives, self.eval_every, self.patience = batch_size, negatives, eval_every, patience
        self.item_dropout = item_dropout
        self.threads, self.progress = threads, progress

    def fit(self, data: TrainData, validation: TrainData | None = None) -> "VBPR":
        if data.item_features is None:
            raise ValueError("VBPR needs TrainData.item_features (image embeddings)")
        self.seen = data.matrix()
        torch.set_num_threads(self.threads)
        rng = np.random.default_rng(self.seed)
        features = torch.from_numpy(np.ascontiguousarray(data.item_features, dtype=np.float32))
        warm = torch.from_numpy(np.bincount(data.items, minlength=data.n_items) > 0)
        generator = torch.Generator().manual_seed(self.seed)
        params = self._init_params(data.n_users, data.n_items, features.shape[1], warm, generator)
        optimiser = torch.optim.Adam(params.values(), lr=self.lr)
        pool = np.flatnonzero(warm.numpy()) if self.negatives == "warm" else None
        sampler = TripleSampler(data, rng, negative_pool=pool)
        n_batches = max(1, -(-len(data.users) // self.batch_size))
        stopper = EarlyStopping(self.patience)
        for epoch in tqdm(range(1, self.epochs + 1), desc="vbpr", disable=not self.progress):
            users, positives, negatives = (torch.from_numpy(a) for a in sampler.epoch())
            for batch in np.array_split(np.arange(len(users)), n_batches):
                batch = torch.from_numpy(batch)
                loss = self._loss(params, features, users[batch], positives[batch], negatives[batch],
                                  generator)
                optimiser.zero_grad(set_to_none=False)
                loss.backward()
                params["gamma_item"].grad[~warm] = 0.0     # cold items keep γ_i = β_i = 0
                params["beta_item"].grad[~warm] = 0.0
                optimiser.step()
            self._export(params, features)
            if validation is not None and len(validation.users) and epoch % self.eval_every == 0:
                if stopper.update(epoch, validation_metric(self, data, validation), self._state()):
                    break
        if stopper.best_state is not None:
            self.__dict__.update(stopper.best_state)
        self.best_epoch, self.history = stopper.best_epoch or epoch, stopper.history
        return self

    def _init_params(self, n_users: int, n_items: int, dim: int, warm: torch.Tensor, generator) -> dict:
        def xavier(rows, cols):
            bound = np.sqrt(6.0 / (rows + cols))
            return (torch.rand(rows, cols, generator=generator) * 2 - 1) * bound

        gamma_item = xavier(n_items, self.factors)
        gamma_item[~warm] = 0.0
        params = {"gamma_user": xavier(n_users, self.factors), "gamma_item": gamma_item,
                  "theta_user": xavier(n_users, self.visual_factors), "beta_item": torch.zeros(n_items),
                  # E with β' as its last column: one product gives θ-space and the visual bias
                  "projection": xavier(dim, self.visual_factors + 1)}
        return {name: p.requires_grad_() for name, p in params.items()}

    def _loss(self, p: dict, features, users, positives, negatives, generator) -> torch.Tensor:
        n = len(users)
        distinct, where = torch.unique(torch.cat([positives, negatives]), return_inverse=True)
        visual = features[distinct] @ p["projection"]                     # E f and β'·f, distinct items
        visual_diff = visual[where[:n]] - visual[where[n:]]
        gamma_u, theta_u = p["gamma_user"][users], p["theta_user"][users]
        gamma_i, gamma_j = p["gamma_item"][positives], p["gamma_item"][negatives]
        beta_i, beta_j = p["beta_item"][positives], p["beta_item"][negatives]
        latent_i, latent_j = beta_i + (gamma_u * gamma_i).sum(1), beta_j + (gamma_u * gamma_j).sum(1)
        if self.item_dropout > 0:  # score some items as if cold: teaches the visual path to rank alone
            keep = torch.rand(2, n, generator=generator) >= self.item_dropout
            latent_i, latent_j = latent_i * keep[0], latent_j * keep[1]
        x = latent_i - latent_j + (theta_u * visual_diff[:, :-1]).sum(1) + visual_diff[:, -1]
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

    def _state(self) -> dict:
        names = ("gamma_user", "theta_user", "gamma_item", "beta_item", "theta_item", "visual_bias",
                 "projection")
        return {name: getattr(self, name) for name in names}

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.atleast_1d(users)
        return (self.gamma_user[users] @ self.gamma_item.T + self.theta_user[users] @ self.theta_item.T
                + self.beta_item + self.visual_bias)

    def user_vectors(self) -> np.ndarray:
        ones = np.ones((len(self.gamma_user), 1), dtype=np.float32)
        return np.hstack([self.gamma_user, self.theta_user, ones, ones])

    def item_vectors(self) -> np.ndarray:
        return np.hstack([self.gamma_item, self.theta_item, self.beta_item[:, None], self.visual_bias[:, None]])
