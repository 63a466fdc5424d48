"""Datasets on disk → one sample sheet (``clip_id, path, split, label``, ...).

Adapters: the AFEW folder tree, a CSV manifest, the RAVDESS and CREMA-D filename
conventions, and the annotation files of DFEW, FERV39k and MAFW (official folds / splits).
Every adapter checks its files and labels and names the culprit when one is wrong.
"""

from avfer.datasets.adapters import (
    AUDIO_EXTENSIONS,
    MEDIA_EXTENSIONS,
    VIDEO_EXTENSIONS,
    DatasetError,
    derive_clip_ids,
    from_afew,
    from_cremad,
    from_dfew,
    from_ferv39k,
    from_mafw,
    from_manifest,
    from_ravdess,
    is_safe_clip_id,
)
from avfer.datasets.sheet import (
    SHEET_COLUMNS,
    SPLITS,
    assign_shards,
    build_sample_sheet,
    dataset_sources,
    read_sample_sheet,
    shard_clips,
    write_sample_sheet,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "MEDIA_EXTENSIONS",
    "SHEET_COLUMNS",
    "SPLITS",
    "VIDEO_EXTENSIONS",
    "DatasetError",
    "assign_shards",
    "build_sample_sheet",
    "dataset_sources",
    "derive_clip_ids",
    "from_afew",
    "from_cremad",
    "from_dfew",
    "from_ferv39k",
    "from_mafw",
    "from_manifest",
    "from_ravdess",
    "is_safe_clip_id",
    "read_sample_sheet",
    "shard_clips",
    "write_sample_sheet",
]
