"""Audio models: no-audio clips give no opinion, the LLD GRU ignores frames without audio."""

import pytest
import torch

from avfer.errors import AvferError
from avfer.models.audio import FunctionalsMLP, make_audio_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_mlp_uniform_without_audio():
    torch.manual_seed(0)
    model = FunctionalsMLP(20, hidden_sizes=[16, 8]).eval()
    x = torch.randn(3, 20)
    out = model(functionals=x, has_audio=torch.tensor([True, False, True]))
    assert out.shape == (3, 7) and model.output_dim == 8
    assert torch.equal(out[1], torch.zeros(7)) and out[0].abs().sum() > 0


def test_audio_gru_ignores_frames_without_audio():
    torch.manual_seed(0)
    model = make_audio_model("gru", {"audio": 5}, hidden_size=8, window=20, stride=10).eval()
    x = torch.randn(2, 45, 5)
    mask = torch.ones(2, 45, dtype=torch.bool)
    mask[0, 30:] = False
    mask[1] = False  # a clip without an audio track
    out = model(audio=x, audio_mask=mask)
    garbage = torch.where(mask.unsqueeze(-1), x, torch.randn(2, 45, 5) * 50)
    torch.testing.assert_close(model(audio=garbage, audio_mask=mask), out)
    assert torch.equal(out[1], torch.zeros(7))


def test_factory():
    assert isinstance(make_audio_model("mlp", {"functionals": 4}), FunctionalsMLP)
    with pytest.raises(AvferError, match="audio model 'cnn'"):
        make_audio_model("cnn", {"audio": 3})
