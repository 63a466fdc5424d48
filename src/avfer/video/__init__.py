"""Video probing, the 25 fps frame grid shared by every per-frame stage, and grid decoding.

:mod:`avfer.video.probe`: what ffprobe says about a clip (:func:`probe`), the grid
(:func:`grid_length`, :func:`frame_times`) and the ffmpeg/ffprobe check (:func:`check_ffmpeg`).
:mod:`avfer.video.decode`: :class:`GridDecoder`, exactly ``T`` frames of a clip on that grid
from one ffmpeg process.
"""

from avfer.video.decode import GridDecoder, GridFrames, decode_grid
from avfer.video.probe import (
    GRID_FPS,
    ToolError,
    VideoError,
    VideoInfo,
    check_ffmpeg,
    frame_times,
    grid_length,
    probe,
    scaled_size,
)

__all__ = [
    "GRID_FPS",
    "GridDecoder",
    "GridFrames",
    "ToolError",
    "VideoError",
    "VideoInfo",
    "check_ffmpeg",
    "decode_grid",
    "frame_times",
    "grid_length",
    "probe",
    "scaled_size",
]
