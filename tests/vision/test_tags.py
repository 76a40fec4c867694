"""Tags from ImageNet classes and learned heads, merged, stored and scored."""
import json
import math

import pandas as pd
import pytest
from torchvision.models._meta import _IMAGENET_CATEGORIES

from visrec_pipelines.data.demo import CATEGORIES
from visrec_pipelines.vision.tags import (
    DEFAULT_SYNONYMS,
    ImagenetVocabulary,
    Tag,
    default_vocabulary,
    head_tags,
    imagenet_tags,
    merge_tags,
    tag_accuracy,
    tags_from_json,
    tags_to_json,
    tags_to_text,
    top_tag,
)

CLASS_ID = {name: i for i, name in enumerate(_IMAGENET_CATEGORIES)}


def _term(class_name: str):
    return default_vocabulary().terms.get(CLASS_ID[class_name])


@pytest.mark.parametrize("classes, term", [
    (["jersey"], "t-shirt"),
    (["running shoe", "Loafer", "sandal", "clog", "cowboy boot"], "shoe"),
    (["purse", "backpack", "mailbag"], "bag"),
    (["folding chair", "rocking chair", "barber chair", "throne"], "chair"),
    (["table lamp", "lampshade"], "lamp"),
    (["cowboy hat", "sombrero"], "hat"),
    (["jean"], "trousers"),
    (["gown"], "dress"),
])
def test_vocabulary_maps_shop_classes_to_readable_terms(classes, term):
    assert {_term(name) for name in classes} == {(term, "category")}


def test_vocabulary_leaves_meaningless_classes_out_and_kinds_are_known():
    for name in ("tench", "web site", "book jacket", "comic book", "padlock", "nematode"):
        assert _term(name) is None, name
    assert _term("golden retriever") == ("dog", "object")
    assert _term("seashore") == ("beach", "scene")
    assert {kind for _, kind in default_vocabulary().terms.values()} == {"category", "object", "scene"}
    terms = {term for term, _ in default_vocabulary().terms.values()}
    assert {DEFAULT_SYNONYMS.get(c, c) for c in CATEGORIES} <= terms  # every demo category can be said


def test_vocabulary_file_errors_are_caught(tmp_path):
    unknown, twice = tmp_path / "unknown.json", tmp_path / "twice.json"
    unknown.write_text(json.dumps({"terms": {"shoe": {"kind": "category", "classes": ["moon boot"]}}}))
    twice.write_text(json.dumps({"terms": {"shoe": {"kind": "category", "classes": ["clog"]},
                                           "clog": {"kind": "category", "classes": ["clog"]}}}))
    with pytest.raises(ValueError, match="not an ImageNet class"):
        ImagenetVocabulary.load(unknown)
    with pytest.raises(ValueError, match="mapped twice"):
        ImagenetVocabulary.load(twice)


def test_imagenet_tags_sum_probability_per_term_and_ignore_unmapped_classes():
    ids = [CLASS_ID[n] for n in ("tench", "running shoe", "sandal", "jersey", "beagle")]
    tags = imagenet_tags(ids, [0.4, 0.3, 0.2, 0.06, 0.04])
    assert [(t.name, t.kind, t.source) for t in tags] == [
        ("shoe", "category", "imagenet"), ("t-shirt", "category", "imagenet"), ("dog", "object", "imagenet")]
    assert tags[0].confidence == pytest.approx(0.5)
    assert imagenet_tags([CLASS_ID["tench"]], [0.99]) == []


def test_head_tags_use_the_label_group_as_kind():
    tags = head_tags({"category": {"dress": 0.93, "hat": 0.01}, "genres": {"Comedy": 0.71, "Drama": math.nan}})
    assert [(t.name, t.kind, t.source) for t in tags] == [("dress", "category", "head"),
                                                         ("Comedy", "genres", "head")]


def test_tag_validates_confidence():
    for bad in (1.2, -0.1, math.nan):
        with pytest.raises(ValueError):
            Tag("red", bad, "colour", "colour")
    assert Tag("red", 1.0000001, "colour", "colour").confidence == 1.0  # float32 sums
    assert Tag("red", 0.5, "colour", "colour").sources == ("colour",)


def test_merge_combines_sources_by_noisy_or_and_prefers_specific_kinds():
    merged = merge_tags([[Tag("dress", 0.6, "head", "category")], [Tag("dress", 0.5, "imagenet", "category")],
                         [Tag("Shoes", 0.4, "detector", "object"), Tag("shoe", 0.2, "imagenet", "category")]])
    assert [(t.name, t.kind) for t in merged] == [("dress", "category"), ("shoe", "category")]
    assert merged[0].confidence == pytest.approx(0.8) and merged[0].sources == ("head", "imagenet")
    assert merged[1].confidence == pytest.approx(1 - 0.6 * 0.8) and merged[1].source == "detector"
    as_max = merge_tags([[Tag("dress", 0.6, "head", "category"), Tag("dress", 0.5, "imagenet", "category")]],
                        combine="max")
    assert as_max[0].confidence == pytest.approx(0.6)


def test_merge_counts_a_source_once_and_keeps_colours_apart_from_things():
    merged = merge_tags([[Tag("dog", 0.4, "imagenet", "object"), Tag("dog", 0.35, "imagenet", "object"),
                          Tag("orange", 0.5, "imagenet", "category")], [Tag("orange", 0.7, "colour", "colour")]])
    assert {(t.name, t.kind, round(t.confidence, 2)) for t in merged} == {
        ("dog", "object", 0.4), ("orange", "category", 0.5), ("orange", "colour", 0.7)}


def test_merge_drops_weak_and_minor_tags_caps_and_sorts():
    colours = [Tag("red", 0.9, "colour", "colour"), Tag("gray", 0.2, "colour", "colour"),
               Tag("blue", 0.21, "colour", "colour")]
    labels = [Tag(f"label{i}", 0.3 + i / 100, "head", "label") for i in range(10)]
    labels.append(Tag("x", 0.29, "head", "label"))
    merged = merge_tags([colours, labels], min_confidence=0.2, max_tags=5)
    assert [t.name for t in merged] == ["red", "label9", "label8", "label7", "label6"]
    few_colours = merge_tags([colours], min_confidence=0.1, min_colour_ratio=0.2)
    assert [t.name for t in few_colours] == ["red", "blue"]  # max_colours=2; "gray" became "grey" (third)
    assert merge_tags([[Tag("gray", 0.5, "colour", "colour")]])[0].name == "grey"


def test_text_and_json_forms_round_trip():
    tags = merge_tags([[Tag("red", 0.7123456, "colour", "colour"), Tag("striped", 0.5, "head", "pattern")],
                       [Tag("dress", 0.6, "head", "category"), Tag("dress", 0.5, "imagenet", "category")]])
    assert tags_to_text(tags) == "dress; red; striped"
    stored = tags_to_json(tags)
    assert " " not in stored and json.loads(stored)[0] == ["dress", 0.8, "category", "head+imagenet"]
    restored = tags_from_json(stored)
    assert [(t.name, t.kind, t.sources) for t in restored] == [(t.name, t.kind, t.sources) for t in tags]
    assert restored[1].confidence == 0.712
    assert top_tag(restored, "pattern") == "striped" and top_tag(restored, "genres") is None


def test_tag_accuracy_aligns_on_index_and_applies_synonyms():
    truth = pd.Series(["handbag", "red", "grey", None, "shoe"], index=list("abcde"))
    predicted = pd.Series(["blue", "bag", "Red", "dog"], index=list("cabd"))  # no prediction for "e"
    assert tag_accuracy(predicted, truth) == pytest.approx(2 / 4)  # a, b right; c wrong; d unlabelled; e missing
    assert tag_accuracy(pd.Series({"c": "gray"}), truth[["c"]]) == 1.0
    with pytest.raises(ValueError):
        tag_accuracy(predicted, pd.Series([], dtype=object))
