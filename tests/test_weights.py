"""Initial weights: the VGG-Face converter (synthetic file with the real key layout), per-backbone
local files, the fc6 feature layer, and cnn.pretrained: imagenet failing offline in one line."""

import pytest
import torch

from avfer.cli import main
from avfer.models.backbones import BackboneError, build_backbone
from avfer.models.face import FaceModel, load_face_model, save_face_model
from avfer.models.weights import VGG16_CONVS, WeightsError, convert_vgg_face
from avfer.train.cnn import build_model, local_weights


def _vgg_face_dag(path, seed=0):
    """A file with vgg_face_dag.pth's layout: conv<b>_<i> (3x3), fc6/fc7/fc8 linear, 2622 ids
    (fc sizes as released; convolutions thin-channel to keep the file small is not possible, the
    shapes must match vgg16, so the real shapes are used)."""
    g = torch.Generator().manual_seed(seed)
    chans = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    state = {}
    for k, name in enumerate(VGG16_CONVS):
        state[f"{name}.weight"] = torch.randn(chans[k + 1], chans[k], 3, 3, generator=g) * 0.01
        state[f"{name}.bias"] = torch.randn(chans[k + 1], generator=g) * 0.01
    for name, (o, i) in {"fc6": (4096, 25088), "fc7": (4096, 4096), "fc8": (2622, 4096)}.items():
        state[f"{name}.weight"] = torch.randn(o, i, generator=g) * 0.001
        state[f"{name}.bias"] = torch.randn(o, generator=g) * 0.001
    torch.save(state, path)
    return state


@pytest.fixture(scope="module")
def vgg_face(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vggface")
    src = _vgg_face_dag(folder / "vgg_face_dag.pth")
    assert main(["convert-vgg-face", str(folder / "vgg_face_dag.pth"), str(folder / "vgg16.pt")]) == 0
    return src, folder / "vgg16.pt"


def test_converted_vgg_face_loads_into_vgg16_and_fc6_is_the_released_layer(vgg_face):
    src, converted = vgg_face
    model = build_backbone("vgg16", 7, 3, pretrained_path=converted, feature_layer="fc6").eval()
    assert torch.equal(model.net.features[0].weight, src["conv1_1.weight"])
    assert torch.equal(model.net.features[28].bias, src["conv5_3.bias"])
    assert model.feature_dim == 4096
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        fmap = model.net.forward_features(x)
        expected = torch.relu(torch.flatten(fmap, 1) @ src["fc6.weight"].T + src["fc6.bias"])  # fc6 by hand
        assert torch.allclose(model.forward_features(x), expected, atol=1e-4)
        assert model(x).shape == (2, 7)


def test_converter_rejects_another_layout(tmp_path):
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "x.pth")
    with pytest.raises(WeightsError, match=r"x\.pth: not the VGG-Face layout"):
        convert_vgg_face(tmp_path / "x.pth", tmp_path / "y.pt")
    assert not (tmp_path / "y.pt").exists()
    assert main(["convert-vgg-face", str(tmp_path / "missing.pth"), str(tmp_path / "y.pt")]) == 2


def test_per_backbone_local_weights_and_fc6_round_trip(vgg_face, tmp_path):
    src, converted = vgg_face
    cnn = {"input_size": 64, "in_chans": 3, "augment": "none", "normalization": "imagenet",
           "pretrained_paths": {"vgg16": str(converted)}, "pretrained_path": None,
           "pretrained": "none", "feature_layer": "fc6"}  # fmt: skip
    assert local_weights("vgg16", cnn) == str(converted) and local_weights("resnet18", cnn) is None
    model = build_model("vgg16", cnn)
    assert torch.equal(model.backbone.net.features[0].weight, src["conv1_1.weight"])
    save_face_model(tmp_path / "model.pt", model)
    again, _ = load_face_model(tmp_path / "model.pt")
    assert again.spec["feature_layer"] == "fc6" and again.feature_dim == 4096
    faces = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(again.forward_features(faces), model.eval().forward_features(faces), atol=1e-5)
    with pytest.raises(BackboneError, match="fc6 needs a VGG"):
        FaceModel("resnet18", in_chans=3, feature_layer="fc6")


def test_imagenet_offline_fails_in_one_line_naming_the_local_option(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no retries on a dead network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("resnet18", "torchvision_resnet18"):
        with pytest.raises(WeightsError) as err:
            build_backbone(name, 7, 3, pretrained="imagenet")
        msg = str(err.value)
        assert "\n" not in msg and f"cnn.pretrained_paths: {{{name}:" in msg, msg
    with pytest.raises(BackboneError, match="no ImageNet weights"):
        build_backbone("seed_cnn", 7, 1, pretrained="imagenet")
