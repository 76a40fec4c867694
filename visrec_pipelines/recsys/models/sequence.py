"""GRU4Rec-style next-item ranker over each user's time-ordered train history.

An item's vector is its id embedding plus a projection of its image feature, used both as the GRU
input and as the output embedding (tied: fewer parameters, and a cold item gets a vector from its
image alone, its id embedding staying at zero because it is never a target or a sampled negative).
The user's vector is the GRU state after the whole history, so score = user · item exactly; a
learned item bias rides along as one extra coordinate (user side 1, item side the bias).

Training: users batched by similar history length, padded; truncated back-propagation through
``chunk``-step windows with the hidden state carried across; sampled softmax over the targets of
the other users in the batch at the same step (popular negatives) plus shared uniform negatives.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence
from tqdm import tqdm

from ..base import Ranker, TrainData
from .deep import fit_with_validation
from .sampling import EarlyStopping, validation_metric


class GRUNet(nn.Module):
    def __init__(self, n_items: int, feature_dim: int, dim: int, dropout: float):
        super().__init__()
        self.pad = n_items
        self.item_id = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        if feature_dim:
            nn.init.zeros_(self.item_id.weight)  # cold items: image vector only
            self.item_image = nn.Linear(feature_dim, dim)
        else:
            nn.init.normal_(self.item_id.weight, std=0.05)
            self.item_image = None
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=n_items)
        nn.init.zeros_(self.item_bias.weight)
        self.h0 = nn.Parameter(torch.zeros(1, 1, dim))  # the state of a user with no history
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def items(self, idx: torch.Tensor, features: torch.Tensor | None, keep_id: torch.Tensor | None = None):
        v = self.item_id(idx)
        if keep_id is not None:
            v = v * keep_id
        return v if features is None else v + self.item_image(features[idx])

    def run(self, x: torch.Tensor, features, h: torch.Tensor | None = None):
        h = self.h0.expand(1, len(x), -1).contiguous() if h is None else h
        return self.gru(self.dropout(self.items(x, features)), h)


class SequenceRanker(Ranker):
    name = "gru4rec"

    def __init__(self, dim: int = 64, epochs: int = 40, batch_users: int = 64, chunk: int = 32,
                 n_negatives: int = 1024, lr: float = 3e-3, dropout: float = 0.2, id_dropout: float = 0.2,
                 eval_every: int = 2, patience: int = 4, progress: bool = False, seed: int = 0):
        super().__init__(seed)
        self.dim, self.epochs, self.batch_users, self.chunk = dim, epochs, batch_users, chunk
        self.n_negatives, self.lr, self.dropout, self.id_dropout = n_negatives, lr, dropout, id_dropout
        self.eval_every, self.patience, self.progress = eval_every, patience, progress
        self.net: GRUNet | None = None
        self._users = self._items = None

    def fit(self, data: TrainData, validation: TrainData | None = None) -> "SequenceRanker":
        fit_with_validation(self, data, validation, self.epochs)
        return self

    def _train(self, data: TrainData, validation: TrainData | None, epochs: int) -> int:
        """Train from scratch for up to ``epochs``; return the number of epochs kept."""
        self.seen = data.matrix()
        rng = np.random.default_rng(self.seed)
        features = None
        if data.item_features is not None:  # one zero row for the padding index
            features = torch.as_tensor(np.vstack([data.item_features, np.zeros_like(data.item_features[:1])]),
                                       dtype=torch.float32)
        sequences = data.sequences()
        pool = torch.as_tensor(np.unique(data.items))  # uniform negatives: warm items only
        targets = np.concatenate([s[1:] for s in sequences] + [np.zeros(0, dtype=np.int64)])
        share = np.bincount(targets, minlength=data.n_items + 1) / max(1, len(targets))
        self._target_share, self._pool_size = torch.as_tensor(share, dtype=torch.float32), len(pool)
        self.net = net = GRUNet(data.n_items, 0 if features is None else features.shape[1], self.dim, self.dropout)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        stopper = EarlyStopping(self.patience)
        for epoch in tqdm(range(1, epochs + 1), desc=self.name, disable=not self.progress):
            net.train()
            for padded in self._batches(sequences, net.pad, rng):
                h = None
                for start in range(0, padded.shape[1] - 1, self.chunk):
                    window = padded[:, start:start + self.chunk + 1]
                    out, h = net.run(window[:, :-1], features, h)
                    h = h.detach()  # truncated back-propagation: the state goes on, gradients stop
                    negatives = pool[torch.from_numpy(rng.integers(len(pool), size=self.n_negatives))]
                    loss = self._loss(net, out, window[:, 1:], negatives, features)
                    if loss is not None:
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
            self._freeze(sequences, features)
            if validation is not None and epoch % self.eval_every == 0:
                if stopper.update(epoch, validation_metric(self, data, validation), net.state_dict()):
                    break
        if stopper.best_state is not None:
            net.load_state_dict(stopper.best_state)
            self._freeze(sequences, features)
        self.history = stopper.history
        return stopper.best_epoch or epoch

    def _batches(self, sequences: list[np.ndarray], pad: int, rng: np.random.Generator):
        """Padded (b, max_len) batches of users of similar history length, in random order."""
        trainable = [s for s in sequences if len(s) >= 2]
        by_length = sorted(range(len(trainable)), key=lambda k: (len(trainable[k]), k))
        groups = [by_length[i:i + self.batch_users] for i in range(0, len(by_length), self.batch_users)]
        for g in rng.permutation(len(groups)):
            rows = [trainable[k] for k in groups[g]]
            padded = np.full((len(rows), max(map(len, rows))), pad, dtype=np.int64)
            for r, s in enumerate(rows):
                padded[r, :len(s)] = s
            yield torch.as_tensor(padded)

    def _loss(self, net: GRUNet, out, targets, negatives, features):
        """Sampled softmax: each step's target against the batch's other targets at that step
        (masked where they are padding or the same item) and the shared uniform negatives."""
        valid = targets != net.pad                                              # (b, t)
        if not valid.any():
            return None
        keep = (torch.rand(targets.shape + (1,)) >= self.id_dropout).float()
        target_vecs = net.items(targets, features, keep)                        # (b, t, d)
        # logQ correction: every candidate is down-weighted by how often it is drawn (in-batch ∝
        # popularity, plus uniform), or the model learns to rank against popularity.
        log_q = torch.log(len(targets) * self._target_share + len(negatives) / self._pool_size)
        in_batch = torch.einsum("btd,ctd->btc", out, target_vecs) + (net.item_bias(targets).squeeze(-1)
                                                                      - log_q[targets]).T[None]
        same = targets.T[:, :, None] == targets.T[:, None, :]                   # (t, b, c)
        eye = torch.eye(len(targets), dtype=torch.bool)[None]
        blocked = (same & ~eye) | ~valid.T[:, None, :]
        in_batch = in_batch.masked_fill(blocked.transpose(0, 1), float("-inf"))
        sampled = out @ net.items(negatives, features).T + net.item_bias(negatives).squeeze(-1) - log_q[negatives]
        sampled = sampled.masked_fill(negatives[None, None] == targets[:, :, None], float("-inf"))
        logits = torch.cat([in_batch, sampled], dim=-1)[valid]                 # (n_valid, b + n_neg)
        labels = torch.arange(len(targets))[:, None].expand_as(targets)[valid]
        return F.cross_entropy(logits, labels)

    @torch.no_grad()
    def _freeze(self, sequences: list[np.ndarray], features) -> None:
        """User vector = [final state after the full history, 1]; item vector = [embedding, bias]."""
        net = self.net.eval()
        lengths = torch.as_tensor([len(s) for s in sequences])
        padded = torch.full((len(sequences), max(1, int(lengths.max()))), net.pad, dtype=torch.long)
        for r, s in enumerate(sequences):
            padded[r, :len(s)] = torch.as_tensor(s)
        states = net.h0.expand(len(sequences), -1, -1)[:, 0].clone()
        has = lengths > 0
        if has.any():
            packed = pack_padded_sequence(net.items(padded[has], features), lengths[has], batch_first=True,
                                          enforce_sorted=False)
            _, h = net.gru(packed, net.h0.expand(1, int(has.sum()), -1).contiguous())
            states[has] = h[0]
        ones = torch.ones(len(states), 1)
        n_items = net.pad
        items = net.items(torch.arange(n_items), features)
        self._users = torch.cat([states, ones], dim=1).numpy()
        self._items = torch.cat([items, net.item_bias.weight[:n_items]], dim=1).numpy()

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._users[np.asarray(users)] @ self._items.T

    def user_vectors(self) -> np.ndarray:
        return self._users

    def item_vectors(self) -> np.ndarray:
        return self._items
