"""The cache kinds of the pipeline: what each HDF5 file holds, per clip.

Every cache file has root attributes ``avfer_kind``, ``schema_version``, ``fps``,
``creator`` (the stage that wrote it), ``config_hash`` and ``avfer_version``, and one group
per clip under ``/clips/<clip_id>`` with the datasets below (``T`` = frames on the 25 fps grid)
and the group attributes ``split``, ``label`` ('' when unlabelled) and ``status``
('ok', 'no_face', 'no_audio', 'no_video' or 'failed'; a failed clip also has ``error``).
``no_video`` (an audio-only file) is written like ``no_face``: every array on the grid of the
audio stream, no face in any frame.
Readers check kind and version, so a stale cache fails loudly instead of being misread.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CacheSchema:
    """Name, version and required per-clip datasets of one cache kind."""

    kind: str
    version: int
    datasets: tuple[str, ...]
    doc: str


SCHEMAS: dict[str, CacheSchema] = {
    s.kind: s
    for s in (
        CacheSchema(
            "faces",
            1,
            ("faces", "frame_index", "timestamp", "box", "landmarks", "prob", "has_face"),
            "faces uint8 [T,H,W,3] aligned crops; frame_index int32 [T]; timestamp float64 [T] (s);"
            " box float32 [T,4] (x1,y1,x2,y2 in source pixels); landmarks float32 [T,5,2];"
            " prob float32 [T]; has_face bool [T]",
        ),
        CacheSchema(
            "audio",
            1,
            ("lld", "lld_mask", "functionals"),
            "lld float32 [T,D] openSMILE LLDs pooled per 40 ms video frame; lld_mask bool [T];"
            " functionals float32 [D']; root attrs lld_names, functional_names",
        ),
        CacheSchema(
            "features",
            1,
            ("features", "mask"),
            "features float32 [T,D] penultimate-layer CNN features per frame; mask bool [T]"
            " (frame has a face)",
        ),
    )
}
