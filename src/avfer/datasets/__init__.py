"""Datasets on disk → one sample sheet (``clip_id, path, split, label``).

Adapters: the AFEW folder tree, a CSV manifest, and the RAVDESS and CREMA-D filename
conventions. Every adapter checks its files and labels and names the culprit when one is wrong.
"""

from avfer.datasets.adapters import (
    VIDEO_EXTENSIONS,
    DatasetError,
    from_afew,
    from_cremad,
    from_manifest,
    from_ravdess,
)
from avfer.datasets.sheet import (
    SHEET_COLUMNS,
    SPLITS,
    assign_shards,
    build_sample_sheet,
    dataset_fingerprint,
    read_sample_sheet,
    shard_clips,
    write_sample_sheet,
)

__all__ = [
    "SHEET_COLUMNS",
    "SPLITS",
    "VIDEO_EXTENSIONS",
    "DatasetError",
    "assign_shards",
    "build_sample_sheet",
    "dataset_fingerprint",
    "from_afew",
    "from_cremad",
    "from_manifest",
    "from_ravdess",
    "read_sample_sheet",
    "shard_clips",
    "write_sample_sheet",
]
