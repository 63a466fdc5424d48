"""Artifact I/O: atomic writes and the HDF5 cache conventions of every stage."""

from avfer.io.atomic import atomic_path, write_json, write_text
from avfer.io.hdf5 import (
    CacheError,
    ClipRecord,
    ClipWriter,
    ReaderCache,
    config_hash,
    h5_writer,
    iter_clips,
    open_cache,
    read_clip,
    write_clip,
)
from avfer.io.schemas import SCHEMAS, CacheSchema

__all__ = [
    "SCHEMAS",
    "CacheError",
    "CacheSchema",
    "ClipRecord",
    "ClipWriter",
    "atomic_path",
    "config_hash",
    "h5_writer",
    "iter_clips",
    "ReaderCache",
    "open_cache",
    "read_clip",
    "write_clip",
    "write_json",
    "write_text",
]
