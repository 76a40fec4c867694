"""The optional detector runs end to end on user-supplied weights (here: random ones) and fails
clearly when it is misconfigured. No weights are ever downloaded."""
import pytest
import torch
from PIL import Image

from visrec_pipelines.vision.detection import BACKGROUND, Detector, build_model, detector_tags, load_detector
from visrec_pipelines.vision.tags import Tag, merge_tags

NAMES = ["shoe", "bag"]


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("detector") / "random.pt"
    torch.save(build_model("fasterrcnn_mobilenet_v3_large_320_fpn", len(NAMES) + 1).state_dict(), path)
    return path


def test_random_weights_give_well_formed_detections(weights_file, tmp_path):
    names_file = tmp_path / "classes.txt"
    names_file.write_text("shoe\nbag\n")
    detector = load_detector(weights_file, names_file, min_score=0.0)  # random scores are ~1/3
    images = [Image.new("RGB", (64, 48), (200, 30, 40)), Image.new("L", (80, 80), 128)]
    results = detector.detect(images)
    assert len(results) == 2 and all(results)
    for image, detections in zip(images, results):
        scores = [score for _, score, _ in detections]
        assert scores == sorted(scores, reverse=True)
        for label, score, (x0, y0, x1, y1) in detections:
            assert label in NAMES and 0.0 <= score <= 1.0
            assert 0 <= x0 <= x1 <= image.width + 1e-3 and 0 <= y0 <= y1 <= image.height + 1e-3
    tags = detector_tags(results[0], min_score=0.0)
    assert {t.name for t in tags} <= set(NAMES) and len({t.name for t in tags}) == len(tags)
    assert all(t.kind == "object" and t.source == "detector" for t in tags)


def test_checkpoint_wrappers_and_background_first_name_lists_load(weights_file, tmp_path):
    wrapped = tmp_path / "checkpoint.pt"
    torch.save({"model": torch.load(weights_file, weights_only=True), "epoch": 3}, wrapped)
    detector = Detector.from_files(wrapped, [BACKGROUND, *NAMES])
    assert detector.class_names == [BACKGROUND, *NAMES]


def test_misconfiguration_fails_clearly(weights_file, tmp_path):
    assert load_detector(None) is None and load_detector("") is None
    with pytest.raises(FileNotFoundError, match="detector weights file not found: .*missing.pt"):
        load_detector(tmp_path / "missing.pt", NAMES)
    with pytest.raises(ValueError, match="class names"):
        load_detector(weights_file)
    with pytest.raises(ValueError, match="does not fit .* 4 classes"):
        load_detector(weights_file, ["shoe", "bag", "hat"])
    with pytest.raises(ValueError, match="unknown detector architecture"):
        load_detector(weights_file, NAMES, architecture="yolo")
    with pytest.raises(ValueError, match="at least one class"):
        load_detector(weights_file, [])


def test_detector_tags_keep_the_best_score_per_label_and_yield_to_categories():
    detections = [("shoe", 0.9, (0, 0, 5, 5)), ("shoe", 0.6, (5, 5, 9, 9)), ("dog", 0.2, (1, 1, 2, 2))]
    tags = detector_tags(detections, min_score=0.3)
    assert [(t.name, t.confidence) for t in tags] == [("shoe", 0.9)]
    merged = merge_tags([tags, [Tag("shoe", 0.5, "head", "category")]])
    assert [(t.name, t.kind, t.sources) for t in merged] == [("shoe", "category", ("detector", "head"))]
