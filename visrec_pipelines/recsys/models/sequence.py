"""GRU4Rec-style next-item ranker over each user's time-ordered train history.

An item's vector is its id embedding plus a projection of its image feature, used both as the GRU
input and as the output embedding (tied: fewer parameters, and a cold item gets a vector from its
image). The user's vector is the GRU state after the whole train history, so score = user · item
exactly; a learned item bias rides along as one extra coordinate (user side 1, item side the bias).

Training: session-parallel lanes (see ``_lanes``), truncated back-propagation through
``chunk``-step windows with the state carried across; sampled softmax (logQ-corrected) of the next
item against the other lanes' next items at the same step plus shared uniform negatives.
``horizon`` > 1 also asks for the items after the next (the protocol's test is the next 20%).
"""
from __future__ import annotations

import heapq
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..base import TrainData
from ..iterative import NetRanker, TableScores
from . import register


class GRUNet(nn.Module):
    def __init__(self, n_items: int, feature_dim: int, dim: int, dropout: float):
        super().__init__()
        self.pad = n_items
        self.item_id = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        if feature_dim:
            nn.init.zeros_(self.item_id.weight)  # the image part alone tells items apart at first
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

    def run(self, x: torch.Tensor, features, h: torch.Tensor):
        return self.gru(self.dropout(self.items(x, features)), h.contiguous())


@register(order=80, default=False)
class SequenceRanker(TableScores, NetRanker):
    name = "gru4rec"
    needs = frozenset({"image_features"})

    def __init__(self, dim: int = 64, epochs: int = 40, batch_users: int = 64, chunk: int = 16,
                 n_negatives: int = 1024, lr: float = 1e-3, weight_decay: float = 0.0, dropout: float = 0.2,
                 id_dropout: float = 0.2, horizon: int = 1, max_grad_norm: float = 1.0,
                 eval_every: int = 1, patience: int = 5,
                 threads: int | None = 1, progress: bool = False, seed: int = 0):
        super().__init__(epochs, eval_every, patience, threads, progress, seed)
        self.dim, self.batch_users, self.chunk = dim, batch_users, chunk
        self.n_negatives, self.lr, self.dropout, self.id_dropout = n_negatives, lr, dropout, id_dropout
        self.weight_decay, self.horizon, self.max_grad_norm = weight_decay, horizon, max_grad_norm
        self.net: GRUNet | None = None
        self._users = self._items = None

    def begin(self, data: TrainData, epochs: int, rng: np.random.Generator) -> SimpleNamespace:
        self.seen = data.matrix()
        features = None
        if data.item_features is not None:  # one zero row for the padding index
            features = torch.as_tensor(np.vstack([data.item_features, np.zeros_like(data.item_features[:1])]),
                                       dtype=torch.float32)
        sequences = data.sequences()
        pool = torch.as_tensor(np.unique(data.items))  # uniform negatives: warm items only
        warm = torch.zeros(data.n_items, dtype=torch.bool)
        warm[pool] = True
        targets = np.concatenate([s[1:] for s in sequences] + [np.zeros(0, dtype=np.int64)])
        share = np.bincount(targets, minlength=data.n_items + 1) / max(1, len(targets))
        self.net = GRUNet(data.n_items, 0 if features is None else features.shape[1], self.dim, self.dropout)
        return SimpleNamespace(rng=rng, features=features, sequences=sequences, pool=pool, warm=warm,
                               target_share=torch.as_tensor(share, dtype=torch.float32),
                               optimiser=torch.optim.Adam(self.net.parameters(), lr=self.lr,
                                                          weight_decay=self.weight_decay))

    def train_epoch(self, run: SimpleNamespace, epoch: int) -> None:
        net = self.net.train()
        inputs, targets, starts = self._lanes(run.sequences, net.pad, run.rng)
        h = None
        for k in range(inputs.shape[1]):
            h0 = net.h0.expand(1, len(inputs), -1)
            # a lane that starts a new user starts from h0; the others carry their state on
            h = h0 if h is None else torch.where(starts[:, k, None], h0, h.detach())
            out, h = net.run(inputs[:, k], run.features, h)
            negatives = run.pool[torch.from_numpy(run.rng.integers(len(run.pool), size=self.n_negatives))]
            loss = self._loss(run, out, targets[:, k], negatives)
            if loss is not None:
                run.optimiser.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), self.max_grad_norm)  # RNNs: no blow-ups
                run.optimiser.step()

    def _lanes(self, sequences: list[np.ndarray], pad: int, rng: np.random.Generator):
        """Session-parallel batches (GRU4Rec): users in random order are dealt to ``batch_users``
        lanes, always to the shortest, each padded to whole ``chunk``-step windows, so a window
        never spans two users and every optimiser step sees ``batch_users`` users (batching users
        by length instead lets the few longest histories drive long runs of steps on their own).
        Returns inputs (lanes, windows, chunk), targets (lanes, windows, chunk, horizon) and
        starts (lanes, windows): True where a window begins a new user (the state is reset)."""
        lanes: list[list[tuple[np.ndarray, np.ndarray, bool]]] = [[] for _ in range(self.batch_users)]
        heap = [(0, lane) for lane in range(self.batch_users)]
        for user in rng.permutation(len(sequences)):
            seq = sequences[user]
            if len(seq) < 2:
                continue
            n = -(-(len(seq) - 1) // self.chunk) * self.chunk
            x, y = np.full(n, pad), np.full((n, self.horizon), pad)
            x[:len(seq) - 1] = seq[:-1]
            for k in range(self.horizon):  # y[p, k]: the item k + 1 steps after position p
                y[:max(0, len(seq) - 1 - k), k] = seq[1 + k:]
            length, lane = heapq.heappop(heap)
            lanes[lane] += [(x[w:w + self.chunk], y[w:w + self.chunk], w == 0)
                            for w in range(0, n, self.chunk)]
            heapq.heappush(heap, (length + n // self.chunk, lane))
        n_windows = max(map(len, lanes))
        inputs = np.full((self.batch_users, n_windows, self.chunk), pad)
        targets = np.full((self.batch_users, n_windows, self.chunk, self.horizon), pad)
        starts = np.ones((self.batch_users, n_windows), dtype=bool)
        for lane, windows in enumerate(lanes):
            for w, (x, y, first) in enumerate(windows):
                inputs[lane, w], targets[lane, w], starts[lane, w] = x, y, first
        return torch.as_tensor(inputs), torch.as_tensor(targets), torch.as_tensor(starts)

    def _loss(self, run: SimpleNamespace, out, futures, negatives):
        """Sampled softmax of each of the next ``horizon`` items (futures: (b, t, horizon)) against
        the other lanes' next items at the same step and the shared uniform negatives, with any
        candidate that is one of the position's own future items masked out."""
        net, features = self.net, run.features
        valid = futures != net.pad                                              # (b, t, h)
        if not valid.any():
            return None
        targets = futures[..., 0]                                               # the next items
        # logQ correction: a candidate counts less the more often it is drawn (in-batch ∝
        # popularity, plus uniform), or the model learns to rank against popularity.
        log_q = torch.log(len(targets) * run.target_share + len(negatives) / len(run.pool))

        def logit_parts(items):  # id dropout on every item, so image-only vectors stay calibrated
            keep = torch.rand(items.shape + (1,)) >= self.id_dropout
            return net.items(items, features, keep), net.item_bias(items).squeeze(-1) - log_q[items]

        vectors, offsets = logit_parts(futures)
        positive = torch.einsum("btd,bthd->bth", out, vectors) + offsets
        vectors, offsets = logit_parts(targets)
        in_batch = torch.einsum("btd,ctd->btc", out, vectors) + offsets.T[None]
        vectors, offsets = logit_parts(negatives)
        candidates = torch.cat([in_batch, out @ vectors.T + offsets], dim=-1)  # (b, t, c)
        items = torch.cat([targets.T[None].expand(len(targets), -1, -1),
                           negatives[None, None].expand(*targets.shape, -1)], dim=-1)
        blocked = (items[:, :, None] == futures[..., None]).any(2) | (items == net.pad)
        negative_mass = torch.logsumexp(candidates.masked_fill(blocked, float("-inf")), dim=-1, keepdim=True)
        return (torch.logaddexp(positive, negative_mass) - positive)[valid].mean()

    @torch.no_grad()
    def export(self, run: SimpleNamespace) -> None:
        """User vector = [final state after the full history, 1]; item vector = [embedding, bias]."""
        net, sequences, features, warm = self.net.eval(), run.sequences, run.features, run.warm
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
        ids, bias = net.item_id.weight[:net.pad].clone(), net.item_bias.weight[:net.pad].clone()
        # Both losses are shift-invariant, so an item never trained on has no meaningful score
        # level: give cold items the average warm item's id part and bias (their image part is
        # their own), i.e. "a typical item that looks like this".
        ids[~warm], bias[~warm] = ids[warm].mean(0), bias[warm].mean(0)
        items = ids if features is None else ids + net.item_image(features[:net.pad])
        self._users = torch.cat([states, torch.ones(len(states), 1)], dim=1).numpy()
        self._items = torch.cat([items, bias], dim=1).numpy()
