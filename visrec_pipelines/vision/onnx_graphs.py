"""Encoder graphs exported to ONNX once, verified against eager torch, cached on disk by encoder id.

An exported graph is only used after its outputs matched eager torch within MAX_ABS_DIFF on random
input; the cache file appears atomically, so concurrent builders never read a half-written graph.
"""
from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch

MAX_ABS_DIFF = 1e-4  # an exported graph must match eager torch this closely


def default_cache_dir() -> Path:
    """Where exported graphs are kept unless the caller names a place (``Settings.cache_dir``)."""
    return Path.home() / ".cache" / "visrec"


def onnx_graph_path(encoder_id: str, cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "encoders" / f"{encoder_id.replace(':', '_')}.onnx"


def cached_onnx_session(encoder, cache_dir: Path):
    """An onnxruntime session for ``encoder`` (an ``ImageEncoder``): its graph exported once, checked
    against eager torch, and kept under ``cache_dir`` by encoder id."""
    path = onnx_graph_path(encoder.encoder_id, cache_dir)
    if path.is_file():
        try:
            return _ort_session(path)
        except Exception as exc:
            warnings.warn(f"cached graph {path} is unusable ({exc!r}); exporting it again", stacklevel=3)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # e.g. a read-only home: still run fast, just without keeping the graph
        path = Path(tempfile.mkdtemp(prefix="visrec-")) / path.name
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        crop = encoder.preprocessing.crop
        example = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, crop, crop)).astype(np.float32))
        outputs = ["features", "class_probs"][: 1 if encoder._graph.head is None else 2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but still works
            torch.onnx.export(encoder._graph, (example,), str(tmp), dynamo=False, opset_version=17,
                              input_names=["images"], output_names=outputs,
                              dynamic_axes={n: {0: "n"} for n in ["images", *outputs]})
        session = _ort_session(tmp)
        expected = encoder._encode_torch(example.numpy())
        got = session.run(None, {"images": example.numpy()})
        diff = max(float(np.abs(g - e).max()) for g, e in
                   zip(got, [expected.features, expected.class_probs][: len(got)]))
        if not diff <= MAX_ABS_DIFF:
            raise RuntimeError(f"exported graph differs from eager torch by {diff:.2e} > {MAX_ABS_DIFF}")
        os.replace(tmp, path)  # atomic: concurrent builders never see a half-written graph
        return session
    finally:
        tmp.unlink(missing_ok=True)


def _ort_session(path: Path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # ~3x vs basic
    # Single-threaded runs: parallelism comes from lanes (concurrent runs), see the docstring.
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
