"""Encoders: identity, runtimes that agree, sane outputs, user-supplied backbones, streaming."""
import hashlib
import itertools
import shutil

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from visrec_pipelines.data.demo import draw_product, generate_demo
from visrec_pipelines.vision import encoders
from visrec_pipelines.vision.embedding_stream import embed_images
from visrec_pipelines.vision.encoders import Preprocessing, build_encoder, onnx_graph_path
from visrec_pipelines.vision.images import load_rgb

SMALL = dict(resize=72, crop=64)  # random-weight backbones: small images keep the tests fast


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "visrec-cache"  # shared by the modules of a session


@pytest.fixture(scope="module")
def lite(cache_dir):
    return build_encoder(cache_dir=cache_dir)


@pytest.fixture(scope="module")
def lite_torch():
    return build_encoder(runtime="torch")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("demo"), n_items=12, n_users=3, seed=0)


@pytest.fixture(scope="module")
def demo_batch(lite, demo):
    paths = [demo.image_file(p) for p in demo.read_items()["image_path"]]
    return np.stack([lite.preprocessing.to_tensor(load_rgb(p)[0]) for p in paths[:6]])


def _random_weights(name: str, path):
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.get_model(name, weights=None).state_dict(), path)
    return path


def test_identity_follows_weights_and_preprocessing_not_runtime(lite, lite_torch, tmp_path):
    assert lite.runtime == "onnxruntime" and lite_torch.runtime == "torch"
    assert lite.encoder_id == lite_torch.encoder_id
    assert lite.encoder_id.startswith("efficientnet-lite0:")
    assert build_encoder(runtime="torch", resize=288).encoder_id != lite.encoder_id
    assert build_encoder(runtime="torch", interpolation="bicubic").encoder_id != lite.encoder_id

    packaged = encoders._efficientnet_lite0(None)[1]
    same_bytes = shutil.copy(packaged, tmp_path / "copy.pth")
    assert build_encoder(weights_path=same_bytes, runtime="torch").encoder_id == lite.encoder_id
    state = torch.load(packaged, weights_only=True)
    state["_fc.bias"] += 0.01
    torch.save(state, tmp_path / "tuned.pth")
    assert build_encoder(weights_path=tmp_path / "tuned.pth", runtime="torch").encoder_id != lite.encoder_id


def test_onnxruntime_matches_eager_torch(lite, lite_torch, demo_batch, cache_dir):
    ort_out, torch_out = lite.encode(demo_batch), lite_torch.encode(demo_batch)
    assert np.abs(ort_out.features - torch_out.features).max() <= 1e-4
    assert np.abs(ort_out.class_probs - torch_out.class_probs).max() <= 1e-4
    assert onnx_graph_path(lite.encoder_id, cache_dir).is_file()  # exported once, reused


def test_features_are_unit_norm_and_probs_sum_to_one(lite, demo_batch):
    out = lite.encode(demo_batch)
    assert out.features.shape == (6, 1280) == (6, lite.dim) and out.features.dtype == np.float32
    assert out.class_probs.shape == (6, 1000) and len(lite.class_names) == 1000
    np.testing.assert_allclose(np.linalg.norm(out.features, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(out.class_probs.sum(axis=1), 1, atol=1e-4)


def test_pretrained_head_recognises_products(lite):
    def top5(category):
        image = draw_product(category, "red", "plain", 128, np.random.default_rng(0))
        probs = lite.encode(lite.preprocessing.to_tensor(image)[None]).class_probs[0]
        return {lite.class_names[i] for i in np.argsort(probs)[::-1][:5]}
    assert {"jersey", "sweatshirt"} & top5("t-shirt")
    assert {"table lamp", "lampshade"} & top5("lamp")


def test_preprocessing_equals_resize_then_centre_crop():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 200, 3), np.uint8))
    prep = Preprocessing(resize=72, crop=64)
    resized = image.resize((72, 108), Image.Resampling.BILINEAR)
    identity = Preprocessing(resize=64, crop=64)  # on a 64x64 image: normalisation only
    expected = identity.to_tensor(resized.crop((4, 22, 68, 86)))
    got = prep.to_tensor(image)
    assert got.shape == (3, 64, 64) and got.dtype == np.float32
    grey_levels = np.abs(got - expected) * 255 * np.array(prep.std)[:, None, None]
    assert grey_levels.max() <= 1.001  # the same pixels up to rounding
    with pytest.raises(ValueError):
        Preprocessing(resize=200, crop=224)


@pytest.mark.parametrize("name, dim", [("resnet18", 512), ("mobilenet_v3_small", 1024)])
def test_torchvision_backbone_from_a_state_dict_file(name, dim, tmp_path):
    weights = _random_weights(name, tmp_path / f"{name}.pth")
    encoder = build_encoder(name, weights_path=weights, cache_dir=tmp_path, **SMALL)
    reference = build_encoder(name, weights_path=weights, runtime="torch", **SMALL)
    assert encoder.runtime == "onnxruntime" and encoder.encoder_id == reference.encoder_id
    batch = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    out, expected = encoder.encode(batch), reference.encode(batch)
    assert out.features.shape == (3, dim) and out.class_probs.shape == (3, 1000)
    np.testing.assert_allclose(np.linalg.norm(out.features, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(out.class_probs.sum(axis=1), 1, atol=1e-4)
    assert np.abs(out.features - expected.features).max() <= 1e-4


def test_torchvision_weights_from_a_warm_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    _random_weights("resnet18", tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    assert build_encoder("resnet18", runtime="torch", **SMALL).dim == 512


def test_missing_or_wrong_weights_and_unknown_names_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty-hub"))
    with pytest.raises(FileNotFoundError, match="weights_path"):
        build_encoder("resnet50")
    with pytest.raises(FileNotFoundError, match="not found"):
        build_encoder("resnet18", weights_path=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("vit_b_16")
    with pytest.raises(ValueError, match="not a state dict"):
        build_encoder("resnet18", weights_path=_random_weights("mobilenet_v3_small", tmp_path / "m.pth"))


def test_failed_export_falls_back_to_torch(tmp_path, monkeypatch):
    def broken_export(*args, **kwargs):
        raise RuntimeError("exporter broke")
    monkeypatch.setattr(torch.onnx, "export", broken_export)
    weights = _random_weights("resnet18", tmp_path / "r18.pth")
    with pytest.warns(RuntimeWarning, match="eager torch"):
        encoder = build_encoder("resnet18", weights_path=weights, cache_dir=tmp_path, **SMALL)
    assert encoder.runtime == "torch" and not list((tmp_path / "encoders").glob("*"))
    assert encoder.encode(np.zeros((1, 3, 64, 64), np.float32)).features.shape == (1, 512)
    for i in range(5):
        Image.fromarray(np.full((80, 90, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    batches = list(embed_images([(str(i), tmp_path / f"{i}.png") for i in range(5)], encoder, batch_size=3))
    assert [len(b) for b in batches] == [3, 2] and batches[0].features.shape == (3, 512)


def test_embed_images_streams_batches_and_reports_bad_images(lite, demo, tmp_path):
    items = demo.read_items()
    good = [(i, demo.image_file(p)) for i, p in zip(items["item_id"], items["image_path"])]
    (tmp_path / "text.jpg").write_bytes(b"not an image at all")
    data = good[0][1].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    records = good[:5] + [("bad", tmp_path / "text.jpg"), ("gone", tmp_path / "missing.jpg"),
                          ("cut", tmp_path / "cut.jpg")] + good[5:]
    pulled = []

    def endless():
        for n in itertools.count():
            pulled.append(n)
            yield f"copy{n}", good[n % len(good)][1]

    stream = embed_images(endless(), lite, batch_size=4)
    assert len(next(stream)) == 4
    stream.close()
    assert len(pulled) < 100  # only a small prefetch window was read, not the whole "catalogue"

    batches = list(embed_images(records, lite, batch_size=4))
    assert len(batches) == 4 and all(len(b) + len(b.failures) == 4 for b in batches[:-1])
    assert [i for b in batches for i in b.item_ids] == [i for i, _ in good]
    assert {(f.item_id, f.reason) for b in batches for f in b.failures} == {
        ("bad", "not_an_image"), ("gone", "missing_file"), ("cut", "truncated")}
    assert batches[0].sha256[0] == hashlib.sha256(good[0][1].read_bytes()).hexdigest()
    features = np.concatenate([b.features for b in batches])
    direct = lite.encode(np.stack([lite.preprocessing.to_tensor(load_rgb(p)[0]) for _, p in good]))
    assert np.abs(features - direct.features).max() <= 1e-5
    top_probs = np.concatenate([b.top_probs for b in batches])
    assert top_probs.shape == (12, 10) and np.all(np.diff(top_probs, axis=1) <= 0)
    top_classes = np.concatenate([b.top_classes for b in batches])
    assert np.array_equal(top_classes[:, 0], direct.class_probs.argmax(axis=1))
