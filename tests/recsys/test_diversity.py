"""MMR re-ranking over image embeddings (what serving calls for ?diversity=)."""
import numpy as np
import pytest

from visrec_pipelines.recsys.diversity import diversify

# A and B look the same and are the two best; C looks different; D looks like C and is the worst
CANDIDATES = np.array(["A", "B", "C", "D"])
SCORES = np.array([1.0, 0.9, 0.5, 0.1])
VECTORS = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])   # normalised inside


def test_no_diversity_keeps_the_rankers_order():
    assert list(diversify(CANDIDATES, SCORES, VECTORS, k=3, diversity=0.0)) == ["A", "B", "C"]


def test_mmr_by_hand():
    # relevance (min-max) A 1, B 0.889, C 0.444, D 0. After A (always first), at weight 0.5:
    # B 0.5·0.889 − 0.5·1 = −0.056; C 0.5·0.444 − 0 = 0.222; D 0 − 0 = 0 → C.
    # Then B −0.056 vs D 0 − 0.5·1 = −0.5 → B; D last.
    assert list(diversify(CANDIDATES, SCORES, VECTORS, k=4, diversity=0.5)) == ["A", "C", "B", "D"]
    # all weight on variety: after A, the one least like anything chosen, ties to the better-ranked
    assert list(diversify(CANDIDATES, SCORES, VECTORS, k=2, diversity=1.0)) == ["A", "C"]


def test_k_larger_than_the_candidates_and_bad_input():
    assert len(diversify(CANDIDATES, SCORES, VECTORS, k=10, diversity=0.3)) == 4
    assert len(diversify(CANDIDATES[:0], SCORES[:0], VECTORS[:0], k=5)) == 0
    with pytest.raises(ValueError, match="diversity"):
        diversify(CANDIDATES, SCORES, VECTORS, diversity=1.5)
    with pytest.raises(ValueError, match="aligned"):
        diversify(CANDIDATES, SCORES[:3], VECTORS)
