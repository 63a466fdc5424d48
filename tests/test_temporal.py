"""Temporal models: invalid frames never count, windows aggregate as computed by hand."""

import pytest
import torch

from avfer.errors import AvferError
from avfer.models.temporal import (
    AttentionPooling,
    TemporalClassifier,
    aggregate_windows,
    compact_valid,
    make_windows,
    masked_mean,
    n_windows,
    parse_head,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster than two (and immune to a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


HEADS = ["gru", "bgru", "lstm", "blstm", "gru_att", "bgru_att", "lstm_att"]


def _batch(seed=0, batch=4, seq_len=90, dim=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seq_len, dim, generator=g)
    mask = torch.rand(batch, seq_len, generator=g) > 0.3
    mask[1, 50:] = False  # a shorter clip (padding)
    mask[2, 10:40] = False  # the face leaves the frame for a while
    mask[3] = False  # no face at all
    return x, mask


def _scramble(x, mask, seed=1):
    """Same valid frames, different garbage in the invalid ones."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=g) * 100
    return torch.where(mask.unsqueeze(-1), x, noise)


def test_parse_head():
    assert parse_head("bgru_att") == {"cell": "gru", "bidirectional": True, "attention": True}
    assert parse_head("lstm") == {"cell": "lstm", "bidirectional": False, "attention": False}
    with pytest.raises(AvferError, match="temporal head 'cnn'"):
        parse_head("cnn")


def test_compact_valid_moves_valid_frames_first_in_order():
    x = torch.arange(6.0).view(1, 6, 1)
    mask = torch.tensor([[False, True, False, True, True, False]])
    compact, lengths, order = compact_valid(x, mask)
    assert lengths.tolist() == [3]
    assert compact[0, :, 0].tolist() == [1.0, 3.0, 4.0, 0.0, 0.0, 0.0]
    assert order[0, :3].tolist() == [1, 3, 4]


def test_masked_mean_and_attention_ignore_invalid_frames():
    x, mask = _batch()
    expected = torch.stack([x[i][mask[i]].mean(0) if mask[i].any() else torch.zeros(6) for i in range(4)])
    torch.testing.assert_close(masked_mean(x, mask), expected)
    torch.testing.assert_close(masked_mean(_scramble(x, mask), mask), expected)
    att = AttentionPooling(6, 8)
    torch.testing.assert_close(att(x, mask), att(_scramble(x, mask), mask))
    assert torch.equal(att(x, mask)[3], torch.zeros(6))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("window", [None, 32])
def test_padded_and_faceless_frames_do_not_change_the_output(head, window):
    torch.manual_seed(0)
    model = TemporalClassifier(6, hidden_size=8, window=window, stride=16, **parse_head(head)).eval()
    x, mask = _batch()
    out = model(video=x, video_mask=mask)
    torch.testing.assert_close(model(video=_scramble(x, mask), video_mask=mask), out)
    # More padding (a longer batch) changes nothing either.
    x_long = torch.cat([x, torch.randn(4, 47, 6)], dim=1)
    mask_long = torch.cat([mask, torch.zeros(4, 47, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(model(video=x_long, video_mask=mask_long), out)
    # Each clip alone, cut to its own length, gives the same logits as in the batch.
    for i in range(3):
        length = int(mask[i].nonzero().max()) + 1
        alone = model(video=x[i : i + 1, :length], video_mask=mask[i : i + 1, :length])
        torch.testing.assert_close(alone[0], out[i])
    assert torch.equal(out[3], torch.zeros(7))  # no valid frame: uniform probabilities


def test_make_windows_by_hand():
    x = torch.arange(10.0).view(1, 10, 1)
    windows, n = make_windows(x, window=4, stride=3)
    assert n == n_windows(10, 4, 3) == 3
    assert windows[:, :, 0].tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    windows, n = make_windows(x, window=4, stride=4)  # the last window is zero-padded
    assert n == 3 and windows[2, :, 0].tolist() == [8, 9, 0, 0]
    assert make_windows(x, window=16, stride=8)[1] == 1


def test_aggregate_windows_mean_of_valid_windows():
    logits = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]], [[5.0, 5.0], [0.0, 0.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, False], [False, False, False]])
    assert aggregate_windows(logits, valid).tolist() == [[2.0, 1.0], [0.0, 0.0]]


def test_windowed_model_equals_mean_of_window_logits():
    torch.manual_seed(0)
    model = TemporalClassifier(6, hidden_size=8, window=32, stride=16).eval()
    x = torch.randn(1, 70, 6)
    mask = torch.ones(1, 70, dtype=torch.bool)
    starts = [0, 16, 32, 48]  # the window at 48 covers the end (70); a 5th is not needed
    by_hand = torch.stack(
        [model.classify(video=x[:, s : s + 32], video_mask=mask[:, s : s + 32])[0] for s in starts]
    ).mean(0)
    torch.testing.assert_close(model(video=x, video_mask=mask)[0], by_hand)


def test_gradients_flow_and_shapes():
    x, mask = _batch()
    model = TemporalClassifier(6, hidden_size=8, window=32, stride=16, **parse_head("bgru_att"))
    out = model(video=x, video_mask=mask)
    assert out.shape == (4, 7) and model.output_dim == 16
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_gru_trains_on_a_non_pooled_feature_map_input():
    """cnn.feature_layer: map gives 8192-d frames (resnet18 at 112 px); a GRU over them learns."""
    dim, hidden = 8192, 16
    g = torch.Generator().manual_seed(0)
    y = torch.arange(16) % 2
    direction = torch.randn(dim, generator=g)
    x = torch.randn(16, 12, dim, generator=g) + 0.05 * (2.0 * y - 1)[:, None, None] * direction
    mask = torch.ones(16, 12, dtype=torch.bool)
    mask[::3, 8:] = False
    torch.manual_seed(0)
    model = TemporalClassifier(dim, 2, hidden_size=hidden, dropout=0.0)
    assert model.encoder.rnn.weight_ih_l0.shape == (3 * hidden, dim)  # the layer that grows with the map
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(video=x, video_mask=mask), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        acc = (model.eval()(video=x, video_mask=mask).argmax(1) == y).float().mean().item()
    assert losses[-1] < 0.5 * losses[0] and acc == 1.0, (losses, acc)
