"""Transfer learning proper: fine-tune EfficientNet-Lite0's last blocks on the catalogue's labels.

CPU budget, so: the frozen trunk (stem + blocks 0..15-T) runs ONCE per image, in onnxruntime
(eager torch managed ~5 img/s on 2 busy cores, onnxruntime ~20x that), and its 7x7 activations
are cached; only the last T blocks + the 1280-d head conv are trained (BatchNorm statistics
frozen: batches are small), multi-task, one linear layer per label group on the pooled features.
Measured on 2 shared cores: ~30 s per epoch over 1,200 images with T=2.

Whether it pays is measured, never assumed: calibrated heads (``head_training``) on frozen and on
fine-tuned features are fitted on one part of the training items and compared on a validation
slice of the training items (a salted hash split; the benchmark's held-out items stay unseen).
The fine-tuned weights are kept only when they win. They are saved as a full Lite0 state dict, so
``encoders.build_encoder(weights_path=...)`` loads them: a new weights hash = a new encoder id =
its own embedding-store folder and its own exported ONNX graph.
"""
from __future__ import annotations

import copy
import hashlib
import io
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .encoders import Preprocessing, _efficientnet_lite0
from .head_training import fit_head
from .heads import TrainedHead, evaluate
from .images import load_rgb
from .label_groups import LabelGroup, find_label_groups, held_out_mask, label_lists

TRAINABLE_BLOCKS = 2
MAX_ITEMS = 4_000   # training images at most (the fashion catalogue's 1.2k all take part)
VALIDATION_SALT = "fine-tune"


@dataclass
class FineTuneResult:
    kept: bool                         # fine-tuned beat frozen on the validation slice
    message: str
    weights_path: Path | None = None   # a Lite0 state dict, for build_encoder(weights_path=...);
    #                                    written even when not kept (use it only if kept)
    validation: dict = field(default_factory=dict)   # per group: frozen / fine_tuned accuracy
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class _Trunk(nn.Module):
    def __init__(self, net: nn.Module, upto: int):
        super().__init__()
        self.net, self.upto = net, upto

    def forward(self, images):
        x = self.net._swish(self.net._bn0(self.net._conv_stem(images)))
        for block in self.net._blocks[: self.upto]:
            x = block(x)
        return x


class _Tail(nn.Module):
    """Trainable last blocks + head conv, pooled, with one linear layer per label group."""

    def __init__(self, net: nn.Module, first: int, outputs: list[int]):
        super().__init__()
        # The network's own modules (shared, not copied): training them trains ``net``.
        self.blocks = nn.ModuleList(net._blocks[first:])
        self.conv_head, self.bn1, self.activation = net._conv_head, net._bn1, net._swish
        self.dropout = nn.Dropout(0.2)
        self.heads = nn.ModuleList(nn.Linear(net._conv_head.out_channels, k) for k in outputs)

    def pooled(self, x):
        for block in self.blocks:
            x = block(x)
        return F.adaptive_avg_pool2d(self.activation(self.bn1(self.conv_head(x))), 1).flatten(1)

    def forward(self, x):
        pooled = self.dropout(self.pooled(x))
        return [head(pooled) for head in self.heads]


def fine_tune_encoder(image_paths: list[str], items: pd.DataFrame, out_dir: str | Path,
                      groups: list[LabelGroup] | None = None, trainable_blocks: int = TRAINABLE_BLOCKS,
                      epochs: int = 6, batch_size: int = 32, time_budget_s: float = 420.0,
                      min_gain: float = 0.0, max_items: int = MAX_ITEMS, seed: int = 0) -> FineTuneResult:
    """Fine-tune on the items outside the held-out slice (rows of ``items`` aligned with
    ``image_paths``); keep the result only if its heads beat the frozen ones on validation.
    A catalogue larger than ``max_items`` trains on a fixed random sample of that many: the trunk's
    cached activations (~37 KB an image) and its one pass over the images stay bounded."""
    started = time.perf_counter()
    groups = find_label_groups(items, min_support=2) if groups is None else groups
    if not groups:
        return FineTuneResult(False, "no label groups in the catalogue: fine-tuning skipped")
    torch.manual_seed(seed)
    train = np.flatnonzero(~held_out_mask(items["item_id"]))
    if len(train) > max_items:
        train = np.sort(np.random.default_rng(seed).choice(train, max_items, replace=False))
    validation = held_out_mask(items["item_id"].iloc[train], 0.2, salt=VALIDATION_SALT)
    net, preprocessing = _base_network()
    first = len(net._blocks) - trainable_blocks
    cached = _trunk_activations(net, first, [image_paths[i] for i in train], preprocessing)
    tasks = [_task(items[g.column].iloc[train], g) for g in groups]
    tail = _Tail(net, first, [len(vocabulary) for vocabulary, _ in tasks])
    frozen_tail = copy.deepcopy(tail).eval()
    fit_rows = torch.from_numpy(~validation)
    history = _train(tail, cached[fit_rows], [t[fit_rows] for _, t in tasks], groups, epochs,
                     batch_size, started + time_budget_s)
    tail.eval()
    scores = _compare(frozen_tail, tail, cached, validation, items.iloc[train], groups)
    gain = float(np.mean([s["fine_tuned"] - s["frozen"] for s in scores.values()]))
    path = _save(net, Path(out_dir))   # saved either way: the run records what was tried
    seconds = time.perf_counter() - started
    if gain <= min_gain:
        return FineTuneResult(False, f"fine-tuned heads did not beat frozen ones on validation "
                              f"(mean gain {gain:+.4f}): the frozen encoder is kept", path, scores,
                              history, seconds)
    return FineTuneResult(True, f"fine-tuned heads beat frozen ones on validation by {gain:+.4f}",
                          path, scores, history, seconds)


def _base_network() -> tuple[nn.Module, Preprocessing]:
    graph, _, preprocessing = _efficientnet_lite0(None)
    return graph.pooled.net, preprocessing


def _trunk_activations(net: nn.Module, upto: int, paths: list[str], preprocessing: Preprocessing,
                       batch: int = 16) -> torch.Tensor:
    """The frozen trunk's output for every image, run once in onnxruntime (eager is ~20x slower)."""
    import onnxruntime as ort
    trunk = _Trunk(net, upto).eval()
    with tempfile.TemporaryDirectory() as scratch:
        graph = Path(scratch) / "trunk.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but still works
            torch.onnx.export(trunk, (torch.zeros(1, 3, 224, 224),), str(graph), dynamo=False, opset_version=17,
                              input_names=["images"], output_names=["x"],
                              dynamic_axes={"images": {0: "n"}, "x": {0: "n"}})
        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    parts = []
    for start in range(0, len(paths), batch):
        pixels = np.stack([preprocessing.to_tensor(load_rgb(p)[0]) for p in paths[start:start + batch]])
        parts.append(session.run(None, {"images": pixels})[0])
    return torch.from_numpy(np.concatenate(parts))


def _task(values: pd.Series, group: LabelGroup) -> tuple[list[str], torch.Tensor]:
    """Targets of one group: class index (-1 = none/rare) or a 0/1 matrix for multi-label."""
    vocabulary = list(group.labels)
    index = {label: j for j, label in enumerate(vocabulary)}
    rows = label_lists(values, group.multi_label)
    if group.multi_label:
        y = torch.zeros(len(rows), len(vocabulary))
        for i, labels in enumerate(rows):
            y[i, [index[label] for label in labels if label in index]] = 1.0
        return vocabulary, y
    return vocabulary, torch.tensor([index.get(r[0], -1) if r else -1 for r in rows])


def _train(tail: _Tail, x: torch.Tensor, targets: list[torch.Tensor], groups, epochs: int,
           batch_size: int, deadline: float) -> list[dict]:
    trainable = list(tail.parameters())
    blocks = [p for n, p in tail.named_parameters() if not n.startswith("heads.")]
    heads = [p for n, p in tail.named_parameters() if n.startswith("heads.")]
    optimiser = torch.optim.AdamW([{"params": blocks, "lr": 3e-4}, {"params": heads, "lr": 3e-3}],
                                  weight_decay=1e-4)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, [3e-4, 3e-3], total_steps=steps)
    history = []
    for epoch in range(epochs):
        tail.train()
        for module in tail.modules():   # frozen BatchNorm statistics: batches of 32 are too small
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        order, total = torch.randperm(len(x)), 0.0
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            outputs = tail(x[rows])
            loss = sum(_loss(out, y[rows], g.multi_label) for out, y, g in zip(outputs, targets, groups))
            optimiser.zero_grad()
            (loss / len(groups)).backward()
            torch.nn.utils.clip_grad_norm_(trainable, 5.0)
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(rows)
        history.append({"epoch": epoch + 1, "loss": total / len(x) / len(groups)})
        if time.perf_counter() > deadline:   # the CPU budget wins over the planned epochs
            history[-1]["stopped"] = "time budget"
            break
    return history


def _loss(logits: torch.Tensor, y: torch.Tensor, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, y)
    known = y >= 0
    return F.cross_entropy(logits[known], y[known]) if known.any() else logits.sum() * 0


@torch.inference_mode()
def pooled_features(tail: _Tail, x: torch.Tensor, batch: int = 128) -> np.ndarray:
    out = torch.cat([tail.pooled(x[i:i + batch]) for i in range(0, len(x), batch)])
    return F.normalize(out, dim=1).numpy()


def _compare(frozen: _Tail, tuned: _Tail, x, validation: np.ndarray, items: pd.DataFrame,
             groups: list[LabelGroup]) -> dict:
    """Per group, held-out-of-training accuracy (micro-F1 for multi-label) of calibrated heads on
    frozen vs fine-tuned features: fitted on the fit part, measured on the validation slice."""
    features = {"frozen": pooled_features(frozen, x), "fine_tuned": pooled_features(tuned, x)}
    out = {}
    for group in groups:
        labels = label_lists(items[group.column], group.multi_label)
        fit = [i for i in np.flatnonzero(~validation) if labels[i]]
        val = [i for i in np.flatnonzero(validation) if labels[i]]
        if len(fit) < 10 or len(val) < 2:
            continue
        out[group.column] = {}
        for name, z in features.items():
            fitted = fit_head({"image": z[fit]}, [labels[i] for i in fit], group.multi_label, c_grid=(0.1, 0.01))
            w, b, _ = fitted.folded()
            head = TrainedHead(LabelGroup(group.column, group.multi_label, fitted.labels), (("image", z.shape[1]),),
                               w, b, fitted.thresholds)
            metrics, _ = evaluate(head, z[val], [labels[i] for i in val])
            out[group.column][name] = metrics.get("accuracy", metrics.get("micro_f1"))
    return out


def _save(net: nn.Module, out_dir: Path) -> Path:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()[:12]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"efficientnet-lite0-finetuned-{digest}.pth"
    path.write_bytes(buffer.getvalue())
    return path
