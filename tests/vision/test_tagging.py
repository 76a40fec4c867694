"""Pipeline-level tagging: all sources merged per item, detector wiring, quality measurement."""
import pandas as pd
import torch
from PIL import Image

from visrec_pipelines.vision.detection import Detector, build_model
from visrec_pipelines.vision.tagging import detector_tag_lists, tag_items, tag_quality
from visrec_pipelines.vision.tags import Tag, tags_from_json


def test_tag_items_merges_sources(tmp_path):
    path = tmp_path / "red.png"
    canvas = Image.new("RGB", (96, 96), (235, 235, 230))
    canvas.paste((200, 20, 20), (24, 24, 72, 72))
    canvas.save(path)
    heads = [{"category": {"dress": 0.9, "hat": 0.1}}]
    tags = tag_items(["a"], [str(path)], None, None, heads, min_confidence=0.3)
    row = tags.iloc[0]
    assert row["top_colour"] == "red" and row["top_category"] == "dress"
    assert {t.name for t in tags_from_json(row["tags"])} == {"red", "dress"}


def test_detector_tags_for_every_image_even_unreadable(tmp_path):
    torch.manual_seed(0)
    model = build_model("fasterrcnn_mobilenet_v3_large_320_fpn", 3)
    detector = Detector(model, ["cat", "dog"], min_score=0.0)
    good = tmp_path / "a.png"
    Image.new("RGB", (64, 64), "white").save(good)
    (tmp_path / "bad.png").write_text("not an image")
    lists = detector_tag_lists(detector, [str(good), str(tmp_path / "bad.png"), str(good)], min_score=0.0)
    assert len(lists) == 3 and lists[1] == []
    assert all(isinstance(t, Tag) and t.source == "detector" for t in lists[0] + lists[2])


def test_tag_quality_uses_held_out_items_and_synonyms():
    ids = [f"i{k}" for k in range(200)]
    catalogue = pd.DataFrame({"item_id": ids, "colour": ["red"] * 200, "category": ["handbag"] * 200,
                              "genres": ["Comedy|Drama"] * 200})
    tags = pd.DataFrame({"item_id": ids, "top_colour": ["red"] * 150 + ["blue"] * 50,
                         "top_category": ["bag"] * 200, "tag_names": [["Comedy", "Horror", "red"]] * 200})
    quality = tag_quality(tags, catalogue, ["genres"])
    assert quality["colour_accuracy"] == 0.75
    assert quality["category_accuracy"] == 1.0     # "bag" is the synonym of "handbag"
    # "Horror" is no label of this catalogue, so only "Comedy" counts as a prediction
    assert quality["genres_precision"] == 1.0 and quality["genres_recall"] == 0.5
