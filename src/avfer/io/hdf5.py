"""HDF5 cache conventions: atomic writers, validated readers, one group per clip.

See :mod:`avfer.io.schemas` for what each cache kind holds.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from avfer.errors import AvferError
from avfer.io.atomic import atomic_path
from avfer.io.schemas import SCHEMAS

CLIPS = "clips"
STATUSES = ("ok", "no_face", "no_audio", "no_video", "failed")
#: Target size of one HDF5 chunk of a per-frame dataset (bytes); image rows get one frame a chunk.
CHUNK_BYTES = 1 << 18


class CacheError(AvferError, RuntimeError):
    """A cache file that is missing, of the wrong kind or of an unsupported schema version."""


def set_file_locking(enabled: bool) -> None:
    """HDF5 file locking for this process and the jobs it starts (``HDF5_USE_FILE_LOCKING``):
    NFS and Lustre mounts without lock support need it off."""
    if enabled:
        os.environ.pop("HDF5_USE_FILE_LOCKING", None)
    else:
        os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"


def config_hash(obj: Any) -> str:
    """Short, stable hash of a JSON-serialisable config fragment (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@contextmanager
def h5_writer(
    path: str | os.PathLike[str],
    kind: str,
    *,
    creator: str,
    fps: float = 25.0,
    config_hash: str = "",
    **attrs: Any,
) -> Iterator[h5py.File]:
    """Open a new cache file of ``kind`` for writing; it appears at ``path`` only on success."""
    if kind not in SCHEMAS:
        raise CacheError(f"{path}: unknown cache kind {kind!r}; known: {sorted(SCHEMAS)}")
    from avfer import __version__

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["avfer_kind"] = kind
        f.attrs["schema_version"] = SCHEMAS[kind].version
        f.attrs["fps"] = float(fps)
        f.attrs["creator"] = creator
        f.attrs["config_hash"] = config_hash
        f.attrs["avfer_version"] = __version__
        for key, value in attrs.items():
            f.attrs[key] = value
        f.create_group(CLIPS)
        yield f


def write_clip(
    f: h5py.File,
    clip_id: str,
    data: Mapping[str, np.ndarray],
    *,
    split: str,
    label: str = "",
    status: str = "ok",
    error: str = "",
    compression: str | None = "lzf",
) -> h5py.Group:
    """Write one clip's datasets into an open cache file, checking them against the schema.

    A ``failed`` clip may omit datasets (it records ``error`` instead).
    """
    kind = str(f.attrs["avfer_kind"])
    if status not in STATUSES:
        raise ValueError(f"clip {clip_id}: status {status!r} not in {STATUSES}")
    missing = [d for d in SCHEMAS[kind].datasets if d not in data]
    if missing and status != "failed":
        raise CacheError(f"clip {clip_id}: {kind} cache needs datasets {missing}")
    g = f[CLIPS].create_group(clip_id)
    g.attrs.update({"split": split, "label": label, "status": status, "error": error})
    for name, arr in data.items():
        arr = np.asarray(arr)
        big = arr.ndim > 0 and arr.size > 1024 and arr.dtype != object
        chunks = frame_chunks(arr.shape, arr.dtype) if big else None
        g.create_dataset(name, data=arr, chunks=chunks, compression=compression if big else None)
    return g


def frame_chunks(shape: tuple[int, ...], dtype: Any) -> tuple[int, ...]:
    """HDF5 chunk shape of a per-frame dataset ``[T, ...]``: one frame per chunk for images
    (``ndim >= 3``: a random frame read decompresses that frame only), else about
    :data:`CHUNK_BYTES` of consecutive rows."""
    tail = tuple(int(x) for x in shape[1:])
    if len(shape) >= 4:
        return (1, *tail)
    row = max(1, int(np.prod(tail, dtype=np.int64)) * np.dtype(dtype).itemsize)
    return (max(1, min(max(int(shape[0]), 1), CHUNK_BYTES // row)), *tail)


class ClipWriter:
    """One clip group written frame block by frame block into resizable datasets, so a clip of
    any length needs the memory of one block only. :meth:`append` adds rows to every per-frame
    dataset; :meth:`close` sets the status (checked against the schema). A clip that fails part
    way is removed with :meth:`discard` (then written as ``failed`` by the caller)."""

    def __init__(
        self,
        f: h5py.File,
        clip_id: str,
        layout: Mapping[str, tuple[tuple[int, ...], Any]],
        *,
        split: str,
        label: str = "",
        compression: str | None = "lzf",
    ) -> None:
        self.f, self.clip_id, self.n = f, clip_id, 0
        self.group = f[CLIPS].create_group(clip_id)
        self.group.attrs.update({"split": split, "label": label, "status": "failed", "error": "incomplete"})
        for name, (tail, dtype) in layout.items():
            shape = (0, *tail)
            self.group.create_dataset(
                name,
                shape=shape,
                maxshape=(None, *tail),
                dtype=dtype,
                chunks=frame_chunks((CHUNK_BYTES, *tail), dtype),
                compression=compression,
            )

    def append(self, rows: Mapping[str, np.ndarray]) -> None:
        """Append the same number of rows to every dataset of the layout."""
        sizes = {len(np.asarray(v)) for v in rows.values()}
        if len(sizes) != 1 or set(rows) != set(self.group):
            raise ValueError(f"clip {self.clip_id}: append needs equal-length rows of {sorted(self.group)}")
        k = sizes.pop()
        for name, arr in rows.items():
            ds = self.group[name]
            ds.resize(self.n + k, axis=0)
            ds[self.n : self.n + k] = arr
        self.n += k

    def close(self, status: str, error: str = "", **attrs: Any) -> h5py.Group:
        """Finish the clip: its status, error and extra attributes."""
        if status not in STATUSES:
            raise ValueError(f"clip {self.clip_id}: status {status!r} not in {STATUSES}")
        kind = str(self.f.attrs["avfer_kind"])
        missing = [d for d in SCHEMAS[kind].datasets if d not in self.group]
        if missing:
            raise CacheError(f"clip {self.clip_id}: {kind} cache needs datasets {missing}")
        self.group.attrs.update({"status": status, "error": error, **attrs})
        return self.group

    def discard(self) -> None:
        """Remove the half-written clip group."""
        del self.f[CLIPS][self.clip_id]


def open_cache(path: str | os.PathLike[str], kind: str, **options: Any) -> h5py.File:
    """Open a cache read-only after checking its kind and schema version (``options`` go to
    ``h5py.File``, e.g. ``rdcc_nbytes``: the chunk cache of each open dataset)."""
    p = Path(path)
    if not p.exists():
        raise CacheError(f"{p}: cache file does not exist")
    try:
        f = h5py.File(p, "r", **options)
    except OSError as exc:
        raise CacheError(f"{p}: not a readable HDF5 file ({exc})") from exc
    found_kind = f.attrs.get("avfer_kind")
    found_kind = None if found_kind is None else str(found_kind)
    found_version = f.attrs.get("schema_version")
    found_version = None if found_version is None else int(found_version)
    expected = SCHEMAS[kind]
    if found_kind != kind or found_version != expected.version:
        f.close()
        raise CacheError(
            f"{p}: expected a {kind!r} cache with schema version {expected.version}, found kind "
            f"{found_kind!r} version {found_version!r}; delete it and re-run the stage that makes it"
        )
    return f


@dataclass
class ClipRecord:
    """One clip read from a cache: its attributes and the requested datasets as arrays."""

    clip_id: str
    split: str
    label: str
    status: str
    error: str = ""
    data: dict[str, np.ndarray] = field(default_factory=dict)


def read_clip(f: h5py.File, clip_id: str, datasets: Iterable[str] | None = None) -> ClipRecord:
    """Read one clip group (all datasets, or only ``datasets``) into memory."""
    g = f[CLIPS][clip_id]
    names = list(g.keys()) if datasets is None else [d for d in datasets if d in g]
    return ClipRecord(
        clip_id=clip_id,
        split=str(g.attrs["split"]),
        label=str(g.attrs["label"]),
        status=str(g.attrs["status"]),
        error=str(g.attrs.get("error", "")),
        data={n: g[n][()] for n in names},
    )


def iter_clips(
    paths: Iterable[str | os.PathLike[str]], kind: str, datasets: Iterable[str] | None = None
) -> Iterator[ClipRecord]:
    """Yield every clip of every cache file in ``paths``, in file then clip order."""
    wanted = None if datasets is None else list(datasets)
    for path in paths:
        with open_cache(path, kind) as f:
            for clip_id in f[CLIPS]:
                yield read_clip(f, clip_id, wanted)


class ReaderCache:
    """At most ``max_open`` cache files open for reading at a time (least recently used closed
    first), reopened in a forked process (a ``DataLoader`` worker never shares a parent's
    HDF5 handle). Readers of many shards keep one handle per file instead of one per read."""

    def __init__(self, kind: str, max_open: int = 8) -> None:
        self.kind, self.max_open = kind, max(1, int(max_open))
        self._files: OrderedDict[str, h5py.File] = OrderedDict()
        self._pid = os.getpid()

    def __call__(self, path: str | os.PathLike[str]) -> h5py.File:
        """The open file ``path`` (checked like :func:`open_cache` when first opened)."""
        if self._pid != os.getpid():
            self._files.clear()  # the parent's handles: never used (nor closed) in a child
            self._pid = os.getpid()
        key = str(path)
        f = self._files.get(key)
        if f is not None and f.id.valid:
            self._files.move_to_end(key)
            return f
        while len(self._files) >= self.max_open:
            _, old = self._files.popitem(last=False)
            old.close()
        # a small chunk cache per dataset: readers keep many datasets open (the 1 MiB default
        # times thousands of clips is gigabytes); per-frame chunks need no more than a frame
        f = self._files[key] = open_cache(key, self.kind, rdcc_nbytes=CHUNK_BYTES)
        return f

    def close(self) -> None:
        """Close every open file."""
        while self._files:
            self._files.popitem()[1].close()

    def __getstate__(self) -> dict[str, Any]:  # pickled into spawned workers without handles
        return {"kind": self.kind, "max_open": self.max_open, "_files": OrderedDict(), "_pid": -1}
