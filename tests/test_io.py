"""HDF5 cache conventions and atomic writes (including a writer killed mid-write)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from avfer.io import (
    CacheError,
    atomic_path,
    config_hash,
    h5_writer,
    iter_clips,
    open_cache,
    read_clip,
    write_clip,
    write_json,
)


def _faces_clip(t: int = 4) -> dict[str, np.ndarray]:
    return {
        "faces": np.full((t, 8, 8, 3), 7, np.uint8),
        "frame_index": np.arange(t, dtype=np.int32),
        "timestamp": np.arange(t) / 25.0,
        "box": np.zeros((t, 4), np.float32),
        "landmarks": np.zeros((t, 5, 2), np.float32),
        "prob": np.ones(t, np.float32),
        "has_face": np.ones(t, bool),
    }


def test_roundtrip_with_attrs(tmp_path):
    path = tmp_path / "train-000.h5"
    with h5_writer(path, "faces", creator="test", config_hash=config_hash({"a": 1})) as f:
        write_clip(f, "c1", _faces_clip(), split="train", label="Happy")
        write_clip(f, "c2", {}, split="train", label="Sad", status="failed", error="corrupt")
    with open_cache(path, "faces") as f:
        assert f.attrs["fps"] == 25.0 and f.attrs["creator"] == "test"
        assert f.attrs["config_hash"] == config_hash({"a": 1})
        rec = read_clip(f, "c1", ["faces", "has_face"])
        assert rec.label == "Happy" and rec.status == "ok" and set(rec.data) == {"faces", "has_face"}
        assert rec.data["faces"].shape == (4, 8, 8, 3) and rec.data["faces"].dtype == np.uint8
    recs = list(iter_clips([path], "faces"))
    assert [r.clip_id for r in recs] == ["c1", "c2"] and recs[1].error == "corrupt"


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_write_clip_checks_schema(tmp_path):
    with h5_writer(tmp_path / "x.h5", "faces", creator="t") as f, pytest.raises(CacheError, match="has_face"):
        clip = _faces_clip()
        del clip["has_face"]
        write_clip(f, "c1", clip, split="val")


def test_reader_rejects_wrong_kind_and_version(tmp_path):
    path = tmp_path / "a.h5"
    with h5_writer(path, "audio", creator="t") as f:
        audio = {"lld": np.zeros((2, 3)), "lld_mask": np.ones(2, bool), "functionals": np.zeros(4)}
        write_clip(f, "c", audio, split="val")
    with pytest.raises(CacheError, match=r"a\.h5: expected a 'faces' cache"):
        open_cache(path, "faces")
    import h5py

    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(CacheError, match="version 99"):
        open_cache(path, "audio")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(CacheError, match=r"junk\.h5: not a readable HDF5"):
        open_cache(tmp_path / "junk.h5", "faces")
    with pytest.raises(CacheError, match="does not exist"):
        open_cache(tmp_path / "missing.h5", "faces")


def test_failed_writer_leaves_no_file(tmp_path):
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), h5_writer(path, "faces", creator="t"):
        raise RuntimeError("boom")
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_killed_writer_keeps_previous_artifact(tmp_path):
    """SIGKILL during a long write: the old complete file stays, no truncated file appears."""
    path = tmp_path / "shard.h5"
    with h5_writer(path, "faces", creator="first") as f:
        write_clip(f, "old", _faces_clip(), split="train", label="Sad")
    script = textwrap.dedent(
        f"""
        import time, numpy as np
        from avfer.io import h5_writer, write_clip
        clip = {{k: v for k, v in __import__('test_io')._faces_clip(50).items()}}
        with h5_writer({str(path)!r}, "faces", creator="second") as f:
            for i in range(100000):
                write_clip(f, f"c{{i}}", clip, split="train", label="Sad")
                if i == 3:
                    print("writing", flush=True)
                time.sleep(0.01)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with open_cache(path, "faces") as f:  # still the first, complete file
        assert f.attrs["creator"] == "first" and list(f["clips"]) == ["old"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "shard.h5"]
    assert all(".tmp-" in name for name in leftovers)  # only a temp name, never the target


def test_atomic_json_and_cleanup(tmp_path):
    write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "m.json").read_text().startswith('{\n  "b": 1')
    with pytest.raises(ValueError), atomic_path(tmp_path / "z.txt") as tmp:
        tmp.write_text("partial")
        raise ValueError
    assert not (tmp_path / "z.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
