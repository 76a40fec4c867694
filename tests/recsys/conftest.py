"""Every registered ranker with settings small enough for a unit test."""
from __future__ import annotations

import pytest

from visrec_pipelines.recsys import zoo

# Per-name overrides of a model's defaults (fewer factors and epochs, larger steps); a ranker not
# listed is tested with its defaults.
SMALL = {
    "itemknn": dict(neighbours=10),
    "ease": dict(l2=10.0),
    "bpr": dict(factors=8, epochs=30, lr=0.05, patience=None),
    "vbpr": dict(factors=8, visual_factors=8, epochs=30, batch_size=256, lr=0.02, patience=None),
    "deep_mlp": dict(dim=16, hidden=(16,), epochs=40, batch_size=256, lr=5e-3),
    "gru4rec": dict(dim=16, epochs=40, batch_users=16, chunk=8, n_negatives=64, lr=1e-2),
    "visual_content": dict(factors=8, epochs=40, batch_size=256, lr=0.02, members=2, patience=None),
    "amr": dict(factors=8, visual_factors=8, epochs=40, batch_size=256, lr=0.02, epsilon=0.1, patience=None),
    "sasrec": dict(dim=16, max_len=8, layers=1, epochs=30, batch_size=32, lr=1e-2, patience=None),
    "two_stage": dict(max_trees=30, patience=5),
}


@pytest.fixture(scope="session")
def small_ranker():
    """``small_ranker(name, seed=0, **overrides)``: an unfitted ranker from the zoo's registry."""
    rankers = zoo.rankers()

    def make(name: str, seed: int = 0, **overrides):
        return rankers[name](**{**SMALL.get(name, {}), "seed": seed, **overrides})

    return make
