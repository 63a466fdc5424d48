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


def _pooled_by_hand(fmap, g):
    """Average of each (h/g x w/g) block of a map whose sides divide by g (adaptive pooling's cells)."""
    n, c, h, w = fmap.shape
    return fmap.reshape(n, c, g, h // g, g, w // g).mean(dim=(3, 5))


def test_feature_map_is_the_pre_pool_map_flattened_channels_last():
    torch.manual_seed(0)
    model = build_backbone("resnet18", 7, 3, input_size=64, feature_layer="map").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fmap = model.net.forward_features(x)  # timm's own pre-pool map [2, 512, 2, 2]
        feats = model.forward_features(x)
    assert fmap.shape == (2, 512, 2, 2) and model.feature_dim == 2048 and feats.shape == (2, 2048)
    cells = feats.view(2, 2, 2, 512)  # channels-last: the 512 values of cell (i, j) are adjacent
    for i in range(2):
        for j in range(2):
            assert torch.equal(cells[:, i, j], fmap[:, :, i, j])
    # at 112 px the map is 512 x 4 x 4; G = 2 pools it onto 2 x 2 cells
    big = build_backbone("resnet18", 7, 3, input_size=112, feature_layer="map", feature_map_size=2).eval()
    big.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        fmap = big.net.forward_features(x)
        feats = big.forward_features(x)
    assert fmap.shape == (2, 512, 4, 4) and big.feature_dim == feats.shape[1] == 2048
    expected = _pooled_by_hand(fmap, 2).permute(0, 2, 3, 1).flatten(1)
    assert torch.allclose(feats, expected, atol=1e-6)
    full = build_backbone("resnet18", 7, 3, input_size=112, feature_layer="map")
    assert full.feature_dim == 8192  # 512 x 4 x 4, the thesis-size non-pooled input of the GRU


@pytest.mark.parametrize(
    ("name", "chans", "size"),
    [("resnet18", 3, 64), ("torchvision_resnet18", 1, 64), ("mini_xception", 1, 48)],
)
def test_feature_map_pooled_to_one_cell_is_the_penultimate_layer(name, chans, size):
    torch.manual_seed(0)
    pooled = build_backbone(name, 7, chans, input_size=size).eval()
    one = build_backbone(name, 7, chans, input_size=size, feature_layer="map", feature_map_size=1).eval()
    one.load_state_dict(pooled.state_dict())
    full = build_backbone(name, 7, chans, input_size=size, feature_layer="map").eval()
    full.load_state_dict(pooled.state_dict())
    x = torch.randn(3, chans, size, size)
    with torch.no_grad():
        a, b, c = pooled.forward_features(x), one.forward_features(x), full.forward_features(x)
    assert one.feature_dim == pooled.feature_dim == a.shape[1] and torch.allclose(a, b, atol=1e-5)
    assert c.shape == (3, full.feature_dim) and full.feature_dim > pooled.feature_dim
    # the mean over the cells of the non-pooled map is the pooled vector too
    assert torch.allclose(c.view(3, -1, a.shape[1]).mean(1), a, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(pooled(x), full(x))  # the classifier path is untouched


def test_feature_map_dims_of_the_static_cnns_and_face_model_round_trip(tmp_path):
    seed = build_backbone("seed_cnn", 7, 1, input_size=48, feature_layer="map")
    assert seed.feature_dim == 128 * 6 * 6  # three 2x2 max-pools: 48 → 6
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert seed.forward_features(x).shape == (2, 4608)
    model = FaceModel("mini_xception", input_size=48, in_chans=1, feature_layer="map", feature_map_size=2)
    assert model.feature_dim == 128 * 2 * 2
    save_face_model(tmp_path / "model.pt", model)
    blob = torch.load(tmp_path / "model.pt", weights_only=True)
    assert (blob["feature_layer"], blob["feature_map_size"], blob["feature_dim"]) == ("map", 2, 512)
    again, _ = load_face_model(tmp_path / "model.pt")
    faces = torch.randint(0, 255, (2, 60, 60, 1), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(again.forward_features(faces), model.eval().forward_features(faces), atol=1e-6)
    assert again.feature_dim == 512 and again.forward_features(faces).shape == (2, 512)


def test_feature_map_of_an_unsupported_backbone_is_one_line():
    for name, size, match in [
        ("vit_tiny_patch16_224", 224, r"vit_tiny_patch16_224 gives features of shape \(1, 197, 192\)"),
        ("torchvision_densenet121", 64, "torchvision DenseNet has no avgpool"),
    ]:
        with pytest.raises(BackboneError, match=match) as err:
            build_backbone(name, 7, 3, input_size=size, feature_layer="map")
        assert "\n" not in str(err.value) and "cnn.feature_layer: map needs" in str(err.value)
    with pytest.raises(BackboneError, match="vit_tiny_patch16_224 does not run at input_size 112") as err:
        build_backbone("vit_tiny_patch16_224", 7, 3, input_size=112, feature_layer="map")
    assert "\n" not in str(err.value)
    with pytest.raises(BackboneError, match="feature_map_size must be >= 1"):
        build_backbone("mini_xception", 7, 1, feature_layer="map", feature_map_size=0)


@pytest.mark.parametrize("backbone", ["seed_cnn", "mini_xception"])
def test_the_feature_layer_is_chosen_when_features_are_read(backbone, tmp_path):
    """A CNN trained without a feature layer (the trainers leave cnn.feature_layer out) is read at
    any layer later: load_face_model(features=...) changes forward_features only; the logits (the
    classifier path, also of the static CNNs, whose head used to read the map) stay the same."""
    torch.manual_seed(0)
    trained = FaceModel(backbone, input_size=48, in_chans=1)
    save_face_model(tmp_path / "model.pt", trained)
    plain, _ = load_face_model(tmp_path / "model.pt")
    mapped, _ = load_face_model(
        tmp_path / "model.pt", features={"feature_layer": "map", "feature_map_size": 2}
    )
    assert plain.spec["feature_layer"] == "penultimate" and mapped.spec["feature_layer"] == "map"
    faces = torch.randint(0, 255, (3, 48, 48, 1), dtype=torch.uint8)
    with torch.no_grad():
        assert mapped.forward_features(faces).shape == (3, 128 * 2 * 2)
        assert torch.allclose(mapped(faces), plain(faces), atol=1e-6) and mapped(faces).shape == (3, 7)
