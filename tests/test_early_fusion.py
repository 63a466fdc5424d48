"""Early fusion a-d: shapes, invalid frames ignored, pretrained encoders loaded and frozen."""

import pytest
import torch

from avfer.errors import AvferError
from avfer.models.fusion import EARLY_FUSION_OPTIONS, load_encoder, make_early_fusion
from avfer.models.temporal import TemporalClassifier

DIMS = {"video": 6, "audio": 4}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    video, audio = torch.randn(3, 50, 6, generator=g), torch.randn(3, 50, 4, generator=g)
    vm, am = torch.ones(3, 50, dtype=torch.bool), torch.ones(3, 50, dtype=torch.bool)
    vm[0, 10:30] = False  # the face leaves
    am[1] = False  # no audio track
    vm[2, 40:] = am[2, 40:] = False  # padding
    return {"video": video, "video_mask": vm, "audio": audio, "audio_mask": am}


@pytest.mark.parametrize("option", sorted(EARLY_FUSION_OPTIONS))
def test_options_ignore_invalid_frames(option):
    torch.manual_seed(0)
    model = make_early_fusion(option, DIMS, hidden_size=8, fc_sizes=[8], window=24, stride=12).eval()
    batch = _inputs()
    out = model(**batch)
    assert out.shape == (3, 7) and out[1].abs().sum() > 0  # video alone still gives an opinion
    noisy = dict(batch)
    noisy["video"] = torch.where(batch["video_mask"][..., None], batch["video"], torch.randn(3, 50, 6) * 9)
    noisy["audio"] = torch.where(batch["audio_mask"][..., None], batch["audio"], torch.randn(3, 50, 4) * 9)
    torch.testing.assert_close(model(**noisy), out)


def test_pretrained_encoders_loaded_and_frozen():
    audio_model = TemporalClassifier(4, modality="audio", hidden_size=5)
    video_model = TemporalClassifier(6, hidden_size=7, cell="gru", bidirectional=True)
    model = make_early_fusion(
        "d",
        DIMS,
        audio_encoder={"hidden_size": 5},
        video_encoder={"hidden_size": 7, "bidirectional": True},
        freeze=True,
        hidden_size=8,
    )
    load_encoder(model.audio_encoder, audio_model.state_dict())
    load_encoder(model.video_encoder, video_model.state_dict())
    for a, b in zip(model.audio_encoder.parameters(), audio_model.encoder.parameters(), strict=True):
        assert torch.equal(a, b) and not a.requires_grad
    model.train()
    assert not model.audio_encoder.training and not model.video_encoder.training and model.encoder.training
    model(**_inputs()).sum().backward()
    assert all(p.grad is None for p in model.pretrained_encoders()[0].parameters())
    assert model.head.weight.grad is not None
    tuned = make_early_fusion("b", DIMS, audio_encoder={"hidden_size": 5}, freeze=False)
    assert all(p.requires_grad for p in tuned.audio_encoder.parameters())
    with pytest.raises(AvferError, match="does not match"):
        load_encoder(tuned.audio_encoder, TemporalClassifier(4, hidden_size=3).state_dict())
    with pytest.raises(AvferError, match="option 'e'"):
        make_early_fusion("e", DIMS)
