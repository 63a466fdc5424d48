"""Audio stage: 16 kHz mono decode, openSMILE LLDs pooled onto the 25 fps frame grid, functionals.

Entry point for the pipeline: :func:`build_audio_shard` (one sample-sheet shard → one ``audio``
HDF5 cache, see :mod:`avfer.io.schemas`). The pieces are usable on their own:
:func:`decode_audio`, :class:`LldExtractor`, :func:`pool_to_grid`, :func:`process_clip`.
"""

from avfer.audio.align import grid_index, lld_centres, pool_to_grid
from avfer.audio.cache import (
    ClipAudio,
    build_audio_shard,
    feature_names,
    lld_column_names,
    process_clip,
    read_audio_names,
    summarize_audio,
)
from avfer.audio.extract import AudioDecodeError, DecodedAudio, decode_audio
from avfer.audio.lld import BUILTIN_SETS, FeatureSetError, LldExtractor, LldOutput

__all__ = [
    "BUILTIN_SETS",
    "AudioDecodeError",
    "ClipAudio",
    "DecodedAudio",
    "FeatureSetError",
    "LldExtractor",
    "LldOutput",
    "build_audio_shard",
    "decode_audio",
    "feature_names",
    "grid_index",
    "lld_centres",
    "lld_column_names",
    "pool_to_grid",
    "process_clip",
    "read_audio_names",
    "summarize_audio",
]
