"""The shared training loop: learns a learnable task, resumes exactly."""

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from avfer.train import fit, predict, seed_everything


def _data(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(3, 8, generator=g) * 2
    y = torch.randint(0, 3, (300,), generator=g)
    x = centers[y] + torch.randn(300, 8, generator=g)
    return TensorDataset(x[:200], y[:200]), TensorDataset(x[200:], y[200:])


def _accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    return float((logits.argmax(1) == targets).mean())


def _run(ckpt=None, stop_after=None, model=None):
    seed_everything(0)
    train, val = _data()
    model = model or nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 3, 0.5)
    loader = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator())
    res = fit(
        model,
        loader,
        DataLoader(val, batch_size=64),
        criterion=nn.CrossEntropyLoss(),
        optimizer=opt,
        scheduler=sched,
        score=_accuracy,
        epochs=6,
        device=torch.device("cpu"),
        checkpoint=ckpt,
        stop_after=stop_after,
    )
    return model, res


def test_fit_learns_above_chance():
    model, res = _run()
    model.load_state_dict(res.best_state)
    logits, y = predict(model, DataLoader(_data()[1], batch_size=64), torch.device("cpu"))
    assert _accuracy(logits, y) > 0.8  # chance is 1/3
    assert res.best_score == max(h["val_score"] for h in res.history)


def test_resume_matches_uninterrupted(tmp_path):
    _, full = _run()
    ckpt = tmp_path / "ckpt.pt"
    _, partial = _run(ckpt, stop_after=2)
    assert len(partial.history) == 2 and ckpt.exists()
    _, resumed = _run(ckpt)  # a fresh model and optimiser, restored from the checkpoint
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for k, v in full.best_state.items():
        assert torch.equal(v, resumed.best_state[k])
