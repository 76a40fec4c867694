"""A deep pair scorer: an MLP over [user, item, user*item], plus user·item (the matrix-factorisation
path of NeuMF: an MLP alone learns a dot product poorly), built from ids and image features.

item = id embedding + P·f_i (P: one learned projection of the image features);
user = id embedding + A·mean(P·f) over the user's train positives (leave-one-out in training, so
the positive never describes itself). Cold items keep a zero id embedding (they are never drawn as
negatives) and id embeddings are dropped at random while training, so the image path alone has to
rank well: that is what scores the cold items.

Not factorised (the MLP mixes user and item), so ``user_vectors``/``item_vectors`` are None.
Scoring every item for a batch of users never builds the (users × items × 3·dim) input: see
``PairMLP.grid_scores``.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..base import TrainData
from ..iterative import NetRanker
from . import register
from .sampling import TripleSampler

TILE_ELEMENTS = 1 << 20  # hidden activations per scoring tile: small enough to stay in cache


class PairMLP(nn.Module):
    def __init__(self, n_users: int, n_items: int, feature_dim: int, dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.user_id = nn.Embedding(n_users, dim)
        self.item_id = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_id.weight, std=0.05)
        nn.init.normal_(self.item_id.weight, std=0 if feature_dim else 0.05)  # with images: cold = 0
        self.image = nn.Linear(feature_dim, dim, bias=False) if feature_dim else None
        self.profile = nn.Linear(dim, dim) if feature_dim else None
        sizes = (3 * dim, *hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], 1)

    def pair_scores(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Scores of aligned rows (..., dim) x (..., dim) -> (...)."""
        h = torch.cat([u, v, u * v], dim=-1)
        for layer in self.layers:
            h = F.relu(layer(h))
        return self.out(h).squeeze(-1) + (u * v).sum(-1)

    @torch.no_grad()
    def grid_scores(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(b, n) scores of every user row against every item row. The first layer splits into
        user, item and user*item parts; the last is a per-user (dim, hidden) matrix, so one batched
        matmul covers a tile of items, and tiles are sized to stay in cache."""
        first, dim = self.layers[0], u.shape[1]
        w_user, w_item, w_both = first.weight.split(dim, dim=1)
        user_part = u @ w_user.T + first.bias                 # (b, h)
        item_part = v @ w_item.T                              # (n, h)
        per_user = u[:, :, None] * w_both.T[None]             # (b, dim, h)
        tile = max(1, TILE_ELEMENTS // (len(u) * first.out_features))
        out = torch.empty(len(u), len(v))
        for start in range(0, len(v), tile):
            chunk = slice(start, start + tile)
            h = F.relu(torch.matmul(v[None, chunk], per_user) + user_part[:, None] + item_part[None, chunk])
            for layer in self.layers[1:]:
                h = F.relu(layer(h))
            out[:, chunk] = self.out(h).squeeze(-1)
        return out + u @ v.T


@register(order=70, default=False)    # below MostPop on MovieLens for 40 s of training
class DeepRanker(NetRanker):
    name = "deep_mlp"
    needs = frozenset({"image_features"})

    def __init__(self, dim: int = 64, hidden: tuple[int, ...] = (64, 32), epochs: int = 80,
                 batch_size: int = 4096, lr: float = 1e-3, l2: float = 1e-4, id_dropout: float = 0.5,
                 eval_every: int = 2, patience: int = 3, threads: int | None = 1, progress: bool = False,
                 seed: int = 0):
        super().__init__(epochs, eval_every, patience, threads, progress, seed)
        self.dim, self.hidden, self.batch_size = dim, tuple(hidden), batch_size
        self.lr, self.l2, self.id_dropout = lr, l2, id_dropout
        self.net: PairMLP | None = None
        self.user_table = self.item_table = None  # final representations: all scoring needs

    def begin(self, data: TrainData, epochs: int, rng: np.random.Generator) -> SimpleNamespace:
        self.seen = seen = data.matrix()
        counts = torch.as_tensor(np.diff(seen.indptr), dtype=torch.float32)
        features = means = None
        if data.item_features is not None:
            features = torch.as_tensor(data.item_features, dtype=torch.float32)
            means = torch.as_tensor(seen @ data.item_features) / counts.clamp(min=1)[:, None]
        self.net = PairMLP(data.n_users, data.n_items, 0 if features is None else features.shape[1],
                           self.dim, self.hidden)
        return SimpleNamespace(n_users=data.n_users, n_items=data.n_items, features=features, means=means,
                               counts=counts, optimiser=torch.optim.Adam(self.net.parameters(), lr=self.lr),
                               sampler=TripleSampler(data, rng, negative_pool=np.unique(data.items)))

    def train_epoch(self, run: SimpleNamespace, epoch: int) -> None:
        self.net.train()
        users, positives, negatives = (torch.from_numpy(a) for a in run.sampler.epoch())
        for batch in torch.split(torch.arange(len(users)), self.batch_size):
            u, i, j = users[batch], positives[batch], negatives[batch]
            items = torch.stack([i, j], dim=1)                            # (b, 2)
            vectors, image = self._items(items, run.features, dropout=True)
            own_image = None if image is None else image[:, 0]
            user_vecs = self._users(u, run.features, run.means, run.counts, leave_out=own_image)
            s = self.net.pair_scores(user_vecs[:, None].expand_as(vectors), vectors)
            loss = -F.logsigmoid(s[:, 0] - s[:, 1]).mean()
            loss = loss + self.l2 * (user_vecs.square().sum() + vectors.square().sum()) / len(u)
            run.optimiser.zero_grad()
            loss.backward()
            run.optimiser.step()

    @torch.no_grad()
    def export(self, run: SimpleNamespace) -> None:
        """Cache the final user and item representations; the raw features are not kept."""
        self.net.eval()
        self.user_table = self._users(torch.arange(run.n_users), run.features, run.means, run.counts)
        self.item_table = self._items(torch.arange(run.n_items), run.features)[0]

    def _items(self, items: torch.Tensor, features, dropout: bool = False):
        """Item vectors and their image part; P·f is computed once per distinct item."""
        vectors = self.net.item_id(items)
        if dropout:
            vectors = vectors * (torch.rand(items.shape + (1,)) >= self.id_dropout)
        if features is None:
            return vectors, None
        distinct, where = torch.unique(items, return_inverse=True)
        image = self.net.image(features[distinct])[where]
        return vectors + image, image

    def _users(self, users: torch.Tensor, features, means, counts, leave_out=None):
        vectors = self.net.user_id(users)
        if features is None:
            return vectors
        distinct, where = torch.unique(users, return_inverse=True)
        profile = self.net.image(means[distinct])[where]                   # mean of P·f (P is linear)
        if leave_out is not None:
            n = counts[users][:, None]
            profile = (profile * n - leave_out) / (n - 1).clamp(min=1)
        return vectors + self.net.profile(profile)

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.atleast_1d(users)
        out = np.empty((len(users), len(self.item_table)), dtype=np.float32)
        for start in range(0, len(users), 256):
            rows = self.user_table[torch.as_tensor(users[start:start + 256])]
            out[start:start + 256] = self.net.grid_scores(rows, self.item_table).numpy()
        return out
