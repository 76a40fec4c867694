"""SASRec (Kang & McAuley 2018): a causal self-attention encoder reads a user's time-ordered
positives; the state after the last one, dotted with every item's embedding, scores what comes next.

Trained with a FULL softmax (cross-entropy over the whole catalogue at every position, as in
Klenitskiy & Vasilev 2023): at catalogue sizes of ten thousand items this is cheap on a CPU and
clearly better than BPR-style sampled negatives. Long histories are cut into windows of
``max_len`` (each window one training row) so no positive is wasted; the user's vector is the
state after their last ``max_len`` positives. score = user vector · item embedding, so it is
factorised and a vector index can serve it.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..base import TrainData
from ..iterative import NetRanker, TableScores
from . import register


class SASRecNet(nn.Module):
    def __init__(self, n_items: int, dim: int, max_len: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.pad = n_items
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        nn.init.normal_(self.item.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.item.weight[n_items].zero_()
        self.position = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim, dropout=dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("causal", torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), 1))

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """(b, L) item indices, right-aligned (padding first) → (b, L, dim) states."""
        length = seqs.shape[1]
        x = self.item(seqs) * self.item.embedding_dim ** 0.5 + self.position.weight[-length:]
        x = self.dropout(x) * (seqs != self.pad).unsqueeze(-1)
        causal = self.causal[-length:, -length:]
        return self.norm(self.encoder(x, mask=causal, is_causal=True))

    def item_table(self) -> torch.Tensor:
        return self.item.weight[:self.pad]


@register(order=75, default=False)
class SASRec(TableScores, NetRanker):
    name = "sasrec"
    tuning = {"dropout": [0.2, 0.5]}

    def __init__(self, dim: int = 64, max_len: int = 50, layers: int = 2, heads: int = 1, dropout: float = 0.2,
                 epochs: int = 60, batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 0.0,
                 eval_every: int = 2, patience: int | None = 3, threads: int | None = 1,
                 progress: bool = False, seed: int = 0):
        super().__init__(epochs, eval_every, patience, threads, progress, seed)
        self.dim, self.max_len, self.layers, self.heads, self.dropout = dim, max_len, layers, heads, dropout
        self.batch_size, self.lr, self.weight_decay = batch_size, lr, weight_decay
        self.net: SASRecNet | None = None
        self._users = self._items = None

    def begin(self, data: TrainData, epochs: int, rng: np.random.Generator) -> SimpleNamespace:
        self.seen = data.matrix()
        self.net = SASRecNet(data.n_items, self.dim, self.max_len, self.layers, self.heads, self.dropout)
        sequences = data.sequences()
        windows = torch.as_tensor(self._windows(sequences, data.n_items))
        optimiser = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return SimpleNamespace(rng=rng, sequences=sequences, windows=windows, optimiser=optimiser)

    def _windows(self, sequences: list[np.ndarray], pad: int) -> np.ndarray:
        """(rows, max_len + 1): each history cut from its end into windows of max_len + 1 items
        overlapping by one (the last input of a window is the first of the next), padded on the left."""
        rows = []
        step = self.max_len
        for seq in sequences:
            for end in range(len(seq), 1, -step):
                window = seq[max(0, end - step - 1):end]
                rows.append(np.concatenate([np.full(step + 1 - len(window), pad), window]))
        return np.array(rows, dtype=np.int64).reshape(-1, step + 1)

    def train_epoch(self, run: SimpleNamespace, epoch: int) -> None:
        net = self.net.train()
        order = torch.as_tensor(run.rng.permutation(len(run.windows)))
        for batch in torch.split(order, self.batch_size):
            window = run.windows[batch]
            inputs, targets = window[:, :-1], window[:, 1:]
            states = net(inputs)
            valid = (targets != net.pad) & (inputs != net.pad)
            logits = states[valid] @ net.item_table().T                 # the full softmax
            loss = F.cross_entropy(logits, targets[valid])
            run.optimiser.zero_grad()
            loss.backward()
            run.optimiser.step()

    @torch.no_grad()
    def export(self, run: SimpleNamespace) -> None:
        """User vector: the state after the user's last ``max_len`` positives (zeros: no history)."""
        net = self.net.eval()
        last = np.full((len(run.sequences), self.max_len), net.pad, dtype=np.int64)
        for u, seq in enumerate(run.sequences):
            tail = seq[-self.max_len:]
            if len(tail):
                last[u, -len(tail):] = tail
        states = torch.cat([net(chunk)[:, -1] for chunk in torch.split(torch.as_tensor(last), 512)])
        has = torch.as_tensor([len(s) > 0 for s in run.sequences])
        self._users = torch.where(has[:, None], states, torch.zeros_like(states)).numpy()
        self._items = net.item_table().numpy().copy()
