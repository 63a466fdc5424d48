"""Visual preprocessing: 25 fps frames → main-subject face detection, tracking and alignment.

``build_face_shard`` fills one face cache (``faces/<shard>.h5``) and ``summarize_faces`` writes
the per-split report; ``process_clip`` does one clip. See :mod:`avfer.faces.pipeline` for the
method (MTCNN on keyframes, O-Net-verified tracking in between, ArcFace-template alignment).
"""

from avfer.faces.align import (
    ARCFACE_112,
    HAAR_BOX,
    FaceCrop,
    align_faces,
    face_template,
    similarity_matrices,
    square_box_crop,
    warp_face,
)
from avfer.faces.cache import SUMMARY_COLUMNS, build_face_shard, shard_summary, summarize_faces
from avfer.faces.detect import Detections, FaceDetector
from avfer.faces.pipeline import ClipFaces, FaceSettings, process_clip, track_clip, track_stream
from avfer.faces.track import SubjectTracker, assign_subjects, iou, select_main

__all__ = [
    "ARCFACE_112",
    "HAAR_BOX",
    "SUMMARY_COLUMNS",
    "ClipFaces",
    "Detections",
    "FaceCrop",
    "FaceDetector",
    "FaceSettings",
    "SubjectTracker",
    "align_faces",
    "assign_subjects",
    "build_face_shard",
    "face_template",
    "iou",
    "process_clip",
    "select_main",
    "shard_summary",
    "similarity_matrices",
    "square_box_crop",
    "summarize_faces",
    "track_clip",
    "track_stream",
    "warp_face",
]
