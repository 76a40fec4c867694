"""A content-based ranker that finds cold items: every item is described ONLY by its content — image
features plus the catalogue's attributes (labels, title words, release era: ``recsys.item_content``)
— so an item nobody has interacted with yet is scored exactly like one everybody has.

    score(u, i) = (p_u + A·profile_u) · (E c_i)  +  w · c_i  +  age_u[bucket(t_u - available_i)]

c_i is the item's content row; profile_u the mean content of the user's train positives; t_u the
user's latest train interaction ("now" for that user); age_u a per-user (plus global) weight per
item-age bucket, because how much a person favours what just came out varies by person, and new
items are exactly the ones without interactions. Trained with the BPR loss; negatives come from the
items that have a positive (an unseen item is unknown, not disliked: drawing cold items as
negatives would teach the model that cold-looking content is bad). Weight decay on the content
weights keeps it from memorising items through rare title words.

``members`` models from consecutive seeds are trained side by side and their scores averaged: a
single one swings by a few points of NDCG between seeds, and more on the cold items.

Not factorised (the age term pairs user time with item date), so ``user_vectors`` is None.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from ..base import TrainData
from ..iterative import IterativeRanker
from . import register
from .sampling import TripleSampler

DAY = 86400.0
# Item-age bucket edges in days: a shop's new arrivals (a week, a month) up to a film's decades.
AGE_EDGES_DAYS = np.array([0, 7, 30, 91, 182, 365, 730, 1095, 1826, 3652, 7305, 14610], dtype=float)
N_AGE_BUCKETS = len(AGE_EDGES_DAYS) + 2          # + unknown date, + not yet available


def age_buckets(user_time: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Int bucket of each item's age at the user's time, elementwise with numpy broadcasting:
    0 unknown, 1 not yet available, then one per ``AGE_EDGES_DAYS`` interval."""
    age = (np.asarray(user_time, float) - np.asarray(available, float)) / DAY
    buckets = np.searchsorted(AGE_EDGES_DAYS, np.nan_to_num(age, nan=0.0), side="right") + 1
    return np.where(np.isnan(age), 0, buckets).astype(np.int64)


class ContentNet(nn.Module):
    """E c_i and w·c_i come out of one (k + 1)-wide projection of the item's content: a linear map
    of the dense image features plus a TF-IDF-weighted bag of its sparse attributes."""

    def __init__(self, n_users: int, image_dim: int, n_attributes: int, factors: int):
        super().__init__()
        self.user = nn.Embedding(n_users, factors)
        nn.init.normal_(self.user.weight, std=0.01)
        self.image = nn.Linear(image_dim, factors + 1, bias=False) if image_dim else None
        self.attributes = nn.EmbeddingBag(n_attributes, factors + 1, mode="sum") if n_attributes else None
        if self.attributes is not None:
            nn.init.normal_(self.attributes.weight, std=0.01)
        self.profile = nn.Linear(image_dim + n_attributes, factors, bias=False)      # A
        self.age = nn.Parameter(torch.zeros(N_AGE_BUCKETS))
        self.user_age = nn.Embedding(n_users, N_AGE_BUCKETS)
        nn.init.zeros_(self.user_age.weight)

    def content_weights(self) -> list[nn.Parameter]:
        return [m.weight for m in (self.image, self.attributes, self.profile) if m is not None]


class ItemContentRows:
    """An item's content as torch inputs: dense image rows and CSR attribute rows, so a title's few
    words cost a few multiply-adds, not a pass over the whole vocabulary."""

    def __init__(self, image: np.ndarray | None, attributes: sp.csr_matrix | None):
        self.image = None if image is None else torch.from_numpy(np.ascontiguousarray(image, np.float32))
        self.attributes = None if attributes is None else sp.csr_matrix(attributes, dtype=np.float32)
        self.n_attributes = 0 if attributes is None else attributes.shape[1]
        if attributes is not None:
            attributes = self.attributes
            self.indptr = torch.from_numpy(attributes.indptr.astype(np.int64))
            self.indices = torch.from_numpy(attributes.indices.astype(np.int64))
            self.values = torch.from_numpy(attributes.data)

    def project(self, net: ContentNet, items: torch.Tensor) -> torch.Tensor:
        """(len(items), k + 1) projected content."""
        out = 0
        if net.image is not None:
            out = net.image(self.image[items])
        if net.attributes is not None:
            starts = self.indptr[items]
            lengths = self.indptr[items + 1] - starts
            offsets = torch.cumsum(lengths, 0) - lengths
            at = torch.repeat_interleave(starts - offsets, lengths) + torch.arange(int(lengths.sum()))
            out = out + net.attributes(self.indices[at], offsets, per_sample_weights=self.values[at])
        return out


class UserProfiles:
    """Each user's mean content over their train positives: the image part dense (users × image
    dim), the attribute part sparse, so a shop with a large title vocabulary and many users never
    holds a dense users × attributes matrix. ``project`` is ``profile_u · Aᵀ`` for some users."""

    def __init__(self, rows: ItemContentRows, seen: sp.csr_matrix):
        counts = np.maximum(np.diff(seen.indptr), 1).astype(np.float32)
        mean = sp.diags(1.0 / counts)
        self.image_dim = 0 if rows.image is None else rows.image.shape[1]
        self.image = None if rows.image is None else torch.from_numpy(
            np.asarray(mean @ (seen @ rows.image.numpy()), dtype=np.float32))
        self.attributes = None if rows.attributes is None else sp.csr_matrix(mean @ (seen @ rows.attributes),
                                                                            dtype=np.float32)

    def __len__(self) -> int:
        return len(self.image) if self.image is not None else self.attributes.shape[0]

    def project(self, linear: nn.Linear, users: torch.Tensor) -> torch.Tensor:
        out = 0
        if self.image is not None:
            out = self.image[users] @ linear.weight[:, :self.image_dim].T
        if self.attributes is not None:
            part = self.attributes[users.numpy()].tocoo()
            where = torch.from_numpy(np.vstack([part.row, part.col]).astype(np.int64))
            sparse = torch.sparse_coo_tensor(where, torch.from_numpy(part.data), part.shape, check_invariants=False)
            out = out + torch.sparse.mm(sparse, linear.weight[:, self.image_dim:].T)
        return out


@register(order=90)
class VisualContentRanker(IterativeRanker):
    name = "visual_content"
    # the zoo trains it on the images too; fit alone accepts content without images (the ablation)
    needs = frozenset({"image_features"})
    tuning = {"weight_decay": [0.001, 0.003]}

    def __init__(self, factors: int = 32, epochs: int = 60, batch_size: int = 2048, lr: float = 0.005,
                 weight_decay: float = 1e-3, reg_user: float = 1e-4, members: int = 3, use_image: bool = True,
                 use_attributes: bool = True, eval_every: int = 5, patience: int | None = 3,
                 threads: int | None = 1, progress: bool = False, seed: int = 0):
        super().__init__(epochs, eval_every, patience, threads, progress, seed)
        self.factors, self.batch_size, self.lr = factors, batch_size, lr
        self.weight_decay, self.reg_user, self.members = weight_decay, reg_user, members
        self.use_image, self.use_attributes = use_image, use_attributes   # for ablations
        self.user_table = self.item_table = self.item_bias = self.age_weights = None
        self.user_time = self.available = None

    def content(self, data: TrainData) -> ItemContentRows:
        image = data.item_features if self.use_image else None
        attributes = data.item_attributes if self.use_attributes else None
        if image is None and attributes is None:
            raise ValueError(f"{self.name} needs image features or item attributes: attach them with "
                             "split.with_item_features() / split.with_item_content()")
        return ItemContentRows(image, attributes)

    def begin(self, data: TrainData, epochs: int, rng: np.random.Generator) -> SimpleNamespace:
        """The members start side by side, each from its own seed (``seed + m``, torch and numpy),
        and train in lockstep: one epoch trains each once, early stopping looks at the ensemble."""
        self.seen = seen = data.matrix()
        content = self.content(data)
        profiles = UserProfiles(content, seen)
        self.available = (np.full(data.n_items, np.nan) if data.item_available is None
                          else np.asarray(data.item_available, dtype=float))
        self.user_time = self._user_time(data)
        image_dim = 0 if content.image is None else content.image.shape[1]
        members = []
        for m in range(self.members):
            torch.manual_seed(self.seed + m)
            net = ContentNet(data.n_users, image_dim, content.n_attributes, self.factors)
            opt = torch.optim.Adam([{"params": net.content_weights(), "weight_decay": self.weight_decay},
                                    {"params": [net.user.weight, net.age, net.user_age.weight]}], lr=self.lr)
            sampler = TripleSampler(data, np.random.default_rng(self.seed + m), np.unique(data.items))
            members.append((net, opt, sampler))
        return SimpleNamespace(members=members, nets=[m[0] for m in members], content=content, profiles=profiles)

    def train_epoch(self, run: SimpleNamespace, epoch: int) -> None:
        for net, opt, sampler in run.members:
            self._epoch(net, opt, sampler, run.content, run.profiles)

    def snapshot(self, run: SimpleNamespace) -> list[dict]:
        return [net.state_dict() for net in run.nets]

    def restore(self, run: SimpleNamespace, state: list[dict]) -> None:
        for net, member_state in zip(run.nets, state, strict=True):
            net.load_state_dict(member_state)

    def export(self, run: SimpleNamespace) -> None:
        self._freeze(run.nets, run.content, run.profiles)

    def _epoch(self, net: ContentNet, opt, sampler: TripleSampler, content: ItemContentRows,
               profiles: UserProfiles) -> None:
        users, positives, negatives = sampler.epoch()
        time = self.user_time[users]
        ages = (torch.from_numpy(age_buckets(time, self.available[positives])),
                torch.from_numpy(age_buckets(time, self.available[negatives])))
        users, positives, negatives = (torch.from_numpy(a) for a in (users, positives, negatives))
        for batch in torch.split(torch.arange(len(users)), self.batch_size):
            u, i, j = users[batch], positives[batch], negatives[batch]
            distinct, where = torch.unique(torch.cat([i, j]), return_inverse=True)
            projected = content.project(net, distinct)[where]                 # (2b, k + 1)
            vectors, bias = projected[:, :-1], projected[:, -1]
            known, at = torch.unique(u, return_inverse=True)                    # A·profile per user once
            user_vecs = net.user(u) + profiles.project(net.profile, known)[at]
            user_age = net.user_age(u)
            half = len(u)
            s_i, s_j = ((user_vecs * vectors[part]).sum(1) + bias[part] + net.age[bucket[batch]]
                        + user_age.gather(1, bucket[batch][:, None])[:, 0]
                        for part, bucket in ((slice(None, half), ages[0]), (slice(half, None), ages[1])))
            loss = -F.logsigmoid(s_i - s_j).mean()
            loss = loss + self.reg_user * (net.user(u).square().sum() + user_age.square().sum()) / half
            opt.zero_grad()
            loss.backward()
            opt.step()

    @staticmethod
    def _user_time(data: TrainData) -> np.ndarray:
        """Each user's latest train interaction; users without one get the latest of anyone."""
        latest = np.full(data.n_users, -np.inf)
        np.maximum.at(latest, data.users, data.timestamps)
        fallback = data.timestamps.max() if len(data.timestamps) else np.nan
        return np.where(np.isfinite(latest), latest, fallback)

    @torch.no_grad()
    def _freeze(self, nets: list[ContentNet], content: ItemContentRows, profiles: UserProfiles) -> None:
        """Keep only what scoring needs, per member: user and item tables, item bias, age weights."""
        items = torch.arange(len(self.available))
        projected = [content.project(net, items) for net in nets]
        # members side by side along the factor axis: one matrix product scores the mean of them all
        self.item_table = np.concatenate([p[:, :-1].numpy() for p in projected], axis=1)
        self.item_bias = np.stack([p[:, -1].numpy() for p in projected]).mean(0)
        everyone = torch.arange(len(profiles))
        self.user_table = np.concatenate([(net.user.weight + profiles.project(net.profile, everyone)).numpy()
                                          for net in nets], axis=1) / len(nets)
        self.age_weights = np.stack([(net.user_age.weight + net.age[None, :]).numpy() for net in nets]).mean(0)

    def score(self, users: np.ndarray) -> np.ndarray:
        """The members' mean score (bias and age terms are linear, so they are averaged up front)."""
        users = np.atleast_1d(users)
        scores = self.user_table[users] @ self.item_table.T + self.item_bias[None, :]
        buckets = age_buckets(self.user_time[users][:, None], self.available[None, :])
        scores += np.take_along_axis(self.age_weights[users], buckets, axis=1)
        return scores.astype(np.float32, copy=False)
