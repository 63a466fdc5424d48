"""The main subject's face crops of one video, spooled to a temporary face cache while it is
tracked: what a bundle's video networks read, as the pipeline's read the face cache
(:class:`avfer.data.frames.FrameStore`, :func:`avfer.train.video.predict_video_clips`), without
holding the crops of a long video in memory. The file has the face stage's layout
(:func:`avfer.faces.layout.face_layout`), written block by block as the face stage writes a
clip (``_Blocks``: gaps and the tail as frames without a face).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from avfer.faces.layout import face_layout
from avfer.faces.pipeline import _Blocks
from avfer.io.hdf5 import ClipWriter, h5_writer
from avfer.video import GridFrames

CLIP_ID = "clip"


class FaceSpool:
    """``on_chunk`` sink of the main subject (slot 0) into ``faces.h5`` of a temporary folder;
    :meth:`finish` completes the clip and returns the cache path; :meth:`close` removes it."""

    def __init__(self, crop_size: int, window: int) -> None:
        self._stack = contextlib.ExitStack()
        folder = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="avfer-spool-"))
        self.path = Path(folder) / "faces.h5"
        self._writing = contextlib.ExitStack()
        f = self._writing.enter_context(h5_writer(self.path, "faces", creator="avfer predict"))
        self.writer = ClipWriter(f, CLIP_ID, face_layout(crop_size), split="test")
        self.blocks = _Blocks(self.writer.append, crop_size, window)

    def __call__(self, g: GridFrames, subjects: list[Any]) -> None:
        self.blocks(g, subjects)

    def finish(self, n: int) -> Path:
        """Write the frames up to ``n`` (no face after the last chunk) and close the file."""
        self.blocks.finish(n)
        self.writer.close("ok" if self.blocks.faces else "no_face", frames=n, faces=self.blocks.faces)
        self._writing.close()
        return self.path

    def close(self) -> None:
        """Remove the temporary folder (the file is closed first if :meth:`finish` was not called)."""
        self._writing.close()
        self._stack.close()

    def __enter__(self) -> FaceSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
