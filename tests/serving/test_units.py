"""The small pieces the hot path relies on."""
import numpy as np
import pytest

from visrec_pipelines.index.exact import top_k
from visrec_pipelines.serving import reasons
from visrec_pipelines.serving.api.params import tag_list
from visrec_pipelines.serving.similar import fast_top_k


@pytest.mark.parametrize("n, k", [(10, 3), (5000, 10), (10_000, 10), (10_000, 100), (10_000, 200), (50_000, 64)])
def test_fast_top_k_is_exact(n, k):
    rng = np.random.default_rng(n + k)
    for trial in range(20):
        scores = rng.normal(size=n).astype(np.float32)
        if trial % 3 == 1:
            scores[rng.choice(n, n // 2, replace=False)] = -np.inf      # most items excluded
        if trial % 3 == 2:
            scores = np.round(scores, 1)                               # many ties
        got, expected = fast_top_k(scores, k), top_k(scores, k)
        assert len(got) == len(expected)
        np.testing.assert_array_equal(np.sort(scores[got])[::-1], scores[expected])
        assert len(set(got.tolist())) == len(got)


def test_diverse_popular_order_interleaves_categories():
    popularity = np.array([9, 8, 7, 6, 5, 4, 3], dtype=np.float32)
    categories = ["a", "a", "a", "b", "b", "c", ""]
    rows, ranks = reasons.diverse_popular_order(popularity, categories)
    assert rows.tolist() == [0, 3, 5, 6, 1, 4, 2]
    assert ranks.tolist() == [0, 0, 0, 0, 1, 1, 2]


def test_reasons_read_like_sentences():
    ranks = reasons.history_tag_ranks([["red", "shoe"], ["red", "dress"], ["blue"]])
    assert list(ranks)[0] == "red"
    assert reasons.shared_tags(["shoe", "red", "green"], ranks) == ["red", "shoe"]
    assert reasons.known_user_reason("Red shoe", 0.9, ["red"], "bpr") == \
        "looks like “Red shoe” you liked; shares red with your history"
    assert reasons.known_user_reason("Red shoe", 0.1, [], "bpr") == "picked for you by the bpr ranker"
    assert reasons.cold_start_reason("shoe", 0) == "popular in shoe"


def test_tag_list_accepts_repeats_and_commas():
    assert tag_list(["red, shoe", "red", " ", "blue"]) == ["red", "shoe", "blue"]
    assert tag_list(None) == []
