"""The FER2013 image models of the static references: built by name, forward shapes, parameter
counts, and trainable through the face-model path (uint8 faces in, logits out)."""

import pytest
import torch

from avfer.models.backbones import build_backbone
from avfer.models.face import FaceModel
from avfer.train.common import freeze_first, layer_modules

# measured at 48x48 grey input, 7 classes (the reference documents quote ~780k for the seed CNN
# and ~7.4M for its full-padding variant; docs/thesis.md explains the differences)
COUNTS = {"seed_cnn": 586_023, "seed_cnn_full": 12_954_119, "vgg_pk": 10_464_455}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_static_cnn_shapes_and_parameter_counts(name):
    model = build_backbone(name, 7, 1).eval()
    assert sum(p.numel() for p in model.parameters()) == COUNTS[name]
    x = torch.zeros(3, 1, 48, 48)
    assert model(x).shape == (3, 7)
    assert model.forward_features(x).shape == (3, model.feature_dim)


def test_static_cnn_follows_the_input_size():
    small, big = (
        build_backbone("seed_cnn", 7, 1, input_size=48),
        build_backbone("seed_cnn", 7, 3, input_size=96),
    )
    assert big(torch.zeros(1, 3, 96, 96)).shape == (1, 7)
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())


def test_transfer_head_fc4096_fc1024_and_frozen_first_layers():
    model = build_backbone("resnet50_fc", 7, 3).eval()
    assert model.fc[0].out_features == 4096 and model.fc[3].out_features == 1024 and model.feature_dim == 1024
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    frozen = freeze_first(model, 10)
    assert frozen[0] == "net.net.conv1" and all(n.startswith("net.") for n in frozen)
    assert not model.net.net.conv1.weight.requires_grad and model.fc[0].weight.requires_grad
    assert layer_modules(model)[-1][0] == "fc.3"  # the classifier (head) is never a frozen layer


def test_static_cnn_as_face_model_learns_a_step():
    torch.manual_seed(0)
    model = FaceModel("seed_cnn", input_size=48, in_chans=1, augment="none")
    faces = torch.randint(0, 255, (4, 112, 112, 3), dtype=torch.uint8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(faces), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert model.forward_features(faces).shape == (4, 64)
