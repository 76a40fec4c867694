"""AMR (Tang et al. 2019, adversarial multimedia recommendation): VBPR trained to stay accurate
when the image features are adversarially perturbed.

VBPR's score is linear in the item's features: s(u, i) = β_i + γ_u·γ_i + w_u·f_i with
w_u = E θ_u + β' (θ_u·E f_i + β'·f_i regrouped on the user side). So the gradient of the BPR loss
with respect to f_i is a sum of ±σ(-x)·w_u over the triples that touch i, and the fast-gradient
(FGSM) perturbation Δ_i = ε·g_i/‖g_i‖ moves each item's features in its own worst direction. Each
step: loss = BPR(clean, with VBPR's regularisers) + λ·BPR(features + Δ), Δ held fixed. Closed form,
no second backward pass, the per-item sums taken in the small θ space: ~2.7× a VBPR step.

``robustness`` measures the same attack on any trained VBPR-family model, over its train triples,
and reports the drop of NDCG@20 / Recall@20 (``metrics.evaluate``) it causes.
"""
from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn.functional import logsigmoid, normalize

from ..metrics import evaluate
from . import register
from .sampling import TripleSampler
from .vbpr import VBPR


@register(order=100)
class AMR(VBPR):
    name = "amr"
    tuning = {"reg": [0.01, 0.1]}

    def __init__(self, epsilon: float = 0.1, adversarial_weight: float = 1.0, **vbpr_args):
        super().__init__(**vbpr_args)
        self.epsilon, self.adversarial_weight = epsilon, adversarial_weight

    def _loss(self, p: dict, rows: tuple, users, positives, negatives, row_i, row_j) -> torch.Tensor:
        clean = super()._loss(p, rows, users, positives, negatives, row_i, row_j)
        n, projection = len(users), p["projection"]                              # E | β': (d, k2 + 1)
        distinct, where = torch.unique(torch.cat([row_i, row_j]), return_inverse=True)
        visual = rows[0][distinct].float() @ projection                          # (distinct, k2 + 1)
        z = torch.cat([p["theta_user"][users], torch.ones(n, 1)], dim=1)         # w_u = E z_u
        gamma_diff = p["gamma_item"][positives] - p["gamma_item"][negatives]
        non_visual = (p["beta_item"][positives] - p["beta_item"][negatives]
                      + (p["gamma_user"][users] * gamma_diff).sum(1))
        with torch.no_grad():  # FGSM per distinct item: g_i = Σ ∓σ(-x)·w_u, summed as z's, then × Eᵀ
            x = non_visual + (z * (visual[where[:n]] - visual[where[n:]])).sum(1)
            pull = torch.sigmoid(-x)[:, None] * z
            summed = torch.zeros_like(visual).index_add_(0, where, torch.cat([-pull, pull]))
            delta = self.epsilon * normalize(summed @ projection.T, dim=1)       # (distinct, d)
        moved = visual + delta @ projection                                      # E(f + Δ), β'·(f + Δ)
        adversarial = non_visual + (z * (moved[where[:n]] - moved[where[n:]])).sum(1)
        return clean - self.adversarial_weight * logsigmoid(adversarial).sum()


def adversarial_perturbation(model: VBPR, train, epsilon: float, rounds: int = 5,
                             seed: int = 0) -> np.ndarray:
    """(n_items, d) FGSM perturbation of every item's features that most increases ``model``'s BPR
    loss over ``rounds`` sampled triples per train positive; rows of norm ``epsilon`` (zero for an
    item no triple touches)."""
    features = np.asarray(train.item_features, dtype=np.float32)
    w = model.theta_user @ model.projection[:, :-1].T + model.projection[:, -1]   # (n_users, d)
    sampler = TripleSampler(train, np.random.default_rng(seed))
    users, positives, negatives = sampler.epoch(rounds * len(train.users))
    x = (model.beta_item[positives] - model.beta_item[negatives]
         + np.einsum("bk,bk->b", model.gamma_user[users],
                     model.gamma_item[positives] - model.gamma_item[negatives])
         + np.einsum("bd,bd->b", w[users], features[positives] - features[negatives]))
    pull = 1.0 / (1.0 + np.exp(x))                                                # σ(-x)
    # d loss / d f = Σ_triples ∓σ(-x)·w_u: an items × users matrix of weights times w
    weights = sp.csr_matrix((np.concatenate([-pull, pull]), (np.concatenate([positives, negatives]),
                                                               np.concatenate([users, users]))),
                            shape=(train.n_items, train.n_users))
    grad = np.asarray(weights @ w, dtype=np.float32)
    norms = np.linalg.norm(grad, axis=1, keepdims=True)
    return epsilon * grad / np.where(norms > 0, norms, 1.0)


def with_features(model: VBPR, features: np.ndarray) -> VBPR:
    """A shallow copy of ``model`` whose item visual terms come from ``features``."""
    perturbed = copy.copy(model)
    visual = np.asarray(features, dtype=np.float32) @ model.projection
    perturbed.theta_item, perturbed.visual_bias = visual[:, :-1], visual[:, -1]
    return perturbed


def robustness(model: VBPR, split, epsilon: float, k: int = 20, seed: int = 0) -> dict:
    """NDCG@k and Recall@k of ``model`` on ``split`` with clean and adversarially perturbed image
    features (each item moved by ``epsilon`` along its own worst direction under the model's loss
    on the train positives), and the relative drops."""
    delta = adversarial_perturbation(model, split.train, epsilon, seed=seed)
    clean = evaluate(model, split, k=k, with_auc=False)
    attacked = evaluate(with_features(model, split.train.item_features + delta), split, k=k, with_auc=False)
    out = {"epsilon": epsilon}
    for metric in (f"ndcg@{k}", f"recall@{k}"):
        out[metric], out[f"{metric}_attacked"] = float(clean[metric]), float(attacked[metric])
        out[f"{metric}_drop"] = (clean[metric] - attacked[metric]) / clean[metric] if clean[metric] else 0.0
    return out
