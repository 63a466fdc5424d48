"""Learning-rate schedules and layer freezing shared by every trainer (avfer.train.common)."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from avfer.errors import AvferError
from avfer.models.face import FaceModel
from avfer.train import fit
from avfer.train.common import (
    build_scheduler,
    freeze_first,
    layer_modules,
    make_optimizer,
    staged_training,
)

CFG = {"epochs": 4, "lr": 0.1, "weight_decay": 0.0}


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _loaders(n: int = 64, batch: int = 8) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=batch, shuffle=True, generator=torch.Generator()), DataLoader(ds, 32)


def _fit(model, schedule, epochs=4, before_epoch=None, opt=None):
    train, val = _loaders()
    opt = opt or make_optimizer(model, CFG)
    res = fit(
        model,
        train,
        val,
        criterion=nn.CrossEntropyLoss(),
        optimizer=opt,
        scheduler=schedule.scheduler,
        scheduler_interval=schedule.interval,
        before_epoch=before_epoch,
        score=lambda logits, t: float((logits.argmax(1) == t).mean()),
        epochs=epochs,
        device=torch.device("cpu"),
    )
    return res, opt


def test_staircase_lr_at_given_steps():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = build_scheduler(opt, {**CFG, "schedule": "staircase", "lr_decay_steps": 5000}, 100)
    assert sched.interval == "step"
    lrs = {}
    for step in range(1, 15001):
        opt.step()
        sched.scheduler.step()
        if step in (4999, 5000, 9999, 10000, 15000):
            lrs[step] = opt.param_groups[0]["lr"]
    assert lrs[4999] == pytest.approx(1e-4)
    assert lrs[5000] == pytest.approx(1e-4 * 0.95)
    assert lrs[9999] == pytest.approx(1e-4 * 0.95)
    assert lrs[10000] == pytest.approx(1e-4 * 0.95**2)
    assert lrs[15000] == pytest.approx(1e-4 * 0.95**3)


def test_fit_steps_a_staircase_per_optimiser_step():
    model = Tiny()
    opt = make_optimizer(model, CFG)
    sched = build_scheduler(
        opt, {**CFG, "schedule": "staircase", "lr_decay_steps": 3, "lr_decay_gamma": 0.5}, 8
    )
    res, opt = _fit(model, sched, epochs=2, opt=opt)
    # 2 epochs x 8 batches = 16 steps → 5 decays; each epoch logs the LR it trained with
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**5)
    assert [h["lr"] for h in res.history] == pytest.approx([0.1, 0.1 * 0.5**2])


def test_constant_cosine_and_plateau():
    model = Tiny()
    res, opt = _fit(model, build_scheduler(make_optimizer(model, CFG), {**CFG, "schedule": "constant"}, 8))
    assert {h["lr"] for h in res.history} == {0.1}
    model = Tiny()
    opt = make_optimizer(model, CFG)
    res, _ = _fit(model, build_scheduler(opt, {**CFG, "schedule": "cosine"}, 8), opt=opt)
    expected = [0.05 * (1 + np.cos(np.pi * e / 4)) for e in range(4)]
    assert [h["lr"] for h in res.history] == pytest.approx(expected)
    model = Tiny()
    opt = make_optimizer(model, CFG)
    plateau = {**CFG, "schedule": "plateau", "plateau_patience": 0, "plateau_factor": 0.5}
    res, _ = _fit(model, build_scheduler(opt, plateau, 8), epochs=6, opt=opt)
    scores = [h["val_score"] for h in res.history]
    lrs = [h["lr"] for h in res.history]
    for e in range(1, 6):  # patience 0: the LR halves after every epoch that did not improve the best
        improved = scores[e - 1] > max(scores[: e - 1], default=-1)
        assert lrs[e] == pytest.approx(lrs[e - 1] * (1 if improved else 0.5))
    with pytest.raises(AvferError, match="schedule"):
        build_scheduler(opt, {**CFG, "schedule": "linear"}, 8)


def test_frozen_layers_unchanged_after_training():
    torch.manual_seed(0)
    model = Tiny()
    names = freeze_first(model, 2)
    assert names == ["body.0", "body.1"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = make_optimizer(model, CFG)
    _fit(model, build_scheduler(opt, CFG, 8), epochs=1, opt=opt)
    after = model.state_dict()
    for key in ("body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias"):
        assert torch.equal(before[key], after[key]), key
    for key in ("body.3.weight", "head.weight"):
        assert not torch.equal(before[key], after[key]), key


def test_classifier_first_stage_trains_only_the_head():
    torch.manual_seed(0)
    model = Tiny()
    freeze_first(model, 1)
    hook = staged_training(model, head_epochs=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = make_optimizer(model, CFG)
    _fit(model, build_scheduler(opt, CFG, 8), epochs=1, before_epoch=hook, opt=opt)
    mid = {k: v.clone() for k, v in model.state_dict().items()}
    assert torch.equal(before["body.3.weight"], mid["body.3.weight"])
    assert not torch.equal(before["head.weight"], mid["head.weight"])
    hook(1)  # second stage: every layer trains except those frozen from the start
    assert model.body[3].weight.requires_grad and not model.body[0].weight.requires_grad


def test_face_model_layers_in_order_without_the_head():
    model = FaceModel("mini_xception", input_size=48, in_chans=1)
    layers = [name for name, _ in layer_modules(model.backbone)]
    assert layers[0].startswith("stem") and not any(n.startswith("head") for n in layers)
    frozen = freeze_first(model.backbone, 3)
    assert len(frozen) == 3 and not model.backbone.get_submodule(frozen[2]).weight.requires_grad


def test_audio_mlp_batch_norm_and_gru_attention_options():
    from avfer.models.audio import make_audio_model

    mlp = make_audio_model("mlp", {"functionals": 10}, hidden_sizes=[16], dropout=0.5, batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm1d) for m in mlp.modules())
    out = mlp(functionals=torch.randn(4, 10), has_audio=torch.tensor([True, True, False, True]))
    assert out.shape == (4, 7) and torch.all(out[2] == 0)
    gru = make_audio_model("gru", {"audio": 5}, hidden_size=8, num_layers=4, attention=True, attention_dim=8)
    assert gru.attention is not None and gru.encoder.rnn.num_layers == 4
    logits = gru(audio=torch.randn(2, 12, 5), audio_mask=torch.ones(2, 12, dtype=torch.bool))
    assert logits.shape == (2, 7)
