"""Optional object detector: a torchvision detection architecture with user-supplied weights.

No pretrained detector weights are reachable from this platform, and nothing may download at run
time, so the model is always built with `weights=None, weights_backbone=None` and filled from a
state-dict file the user provides, together with the class names it was trained on. Without a
weights file there is simply no detector (`load_detector(None)` is None) and no detector tags.

Class names follow torchvision: label 0 is the background. Pass either the full list starting
with "__background__" (as torchvision's COCO category list does) or just the object classes.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from visrec_pipelines.vision.tags import Tag

ARCHITECTURES = ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn",
                 "ssdlite320_mobilenet_v3_large", "retinanet_resnet50_fpn")
DEFAULT_ARCHITECTURE = "fasterrcnn_mobilenet_v3_large_320_fpn"  # the fastest on 2 CPU cores
BACKGROUND = "__background__"
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the input image
Detection = tuple[str, float, Box]        # label, score, box


def build_model(architecture: str, num_classes: int) -> torch.nn.Module:
    """An untrained detector (no weights are fetched; num_classes includes the background)."""
    from torchvision.models import detection
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown detector architecture {architecture!r}; choose from {ARCHITECTURES}")
    return getattr(detection, architecture)(weights=None, weights_backbone=None, num_classes=num_classes)


class Detector:
    def __init__(self, model: torch.nn.Module, class_names: Sequence[str], min_score: float = 0.3,
                 batch_size: int = 8):
        self.model = model.eval()
        self.class_names = _with_background(class_names)
        self.min_score, self.batch_size = min_score, batch_size

    @classmethod
    def from_files(cls, weights_path: Path | str, class_names: Sequence[str] | Path | str,
                   architecture: str = DEFAULT_ARCHITECTURE, min_score: float = 0.3) -> Detector:
        """class_names: a list, or a text file with one name per line."""
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"detector weights file not found: {path} (expected a state dict "
                                    "saved with torch.save(model.state_dict(), path))")
        names = _with_background(_read_names(class_names))
        model = build_model(architecture, len(names))
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no pickled code
        if isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
            state = state.get("model", state.get("state_dict", state))  # common checkpoint wrappers
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{path} does not fit {architecture} with {len(names)} classes "
                             f"(background included): {str(exc)[:500]}") from exc
        return cls(model, names, min_score)

    def detect(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        """Per image, [(label, score, box)] with score >= min_score, best first."""
        results: list[list[Detection]] = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = [pil_to_tensor(image.convert("RGB")).float() / 255
                         for image in images[start:start + self.batch_size]]
                results.extend(self._readable(output) for output in self.model(batch))
        return results

    def _readable(self, output: dict) -> list[Detection]:
        found = []
        for box, label, score in zip(output["boxes"].tolist(), output["labels"].tolist(),
                                     output["scores"].tolist()):
            if score >= self.min_score and 0 < label < len(self.class_names):
                found.append((self.class_names[label], float(score), tuple(float(v) for v in box)))
        return sorted(found, key=lambda d: -d[1])


def load_detector(weights_path: Path | str | None, class_names: Sequence[str] | Path | str | None = None,
                  architecture: str = DEFAULT_ARCHITECTURE, min_score: float = 0.3) -> Detector | None:
    """The configured detector, or None when no weights file is configured."""
    if weights_path is None or not str(weights_path).strip():
        return None
    if class_names is None:
        raise ValueError("a detector weights file needs the list of class names it was trained on")
    return Detector.from_files(weights_path, class_names, architecture, min_score)


def detector_tags(detections: Sequence[Detection], min_score: float = 0.3) -> list[Tag]:
    """One image's detections -> one 'object' tag per label, with its best score."""
    best: dict[str, float] = {}
    for label, score, _box in detections:
        if score >= min_score:
            best[label] = max(score, best.get(label, 0.0))
    return [Tag(label, score, "detector", "object")
            for label, score in sorted(best.items(), key=lambda item: (-item[1], item[0]))]


def _read_names(class_names: Sequence[str] | Path | str) -> list[str]:
    if isinstance(class_names, (str, Path)):
        return [line.strip() for line in Path(class_names).read_text().splitlines() if line.strip()]
    return [str(name) for name in class_names]


def _with_background(names: Sequence[str]) -> list[str]:
    names = list(names)
    if not names or names == [BACKGROUND]:
        raise ValueError("a detector needs at least one class name")
    return names if names[0] == BACKGROUND else [BACKGROUND, *names]
