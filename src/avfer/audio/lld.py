"""openSMILE low-level descriptors (LLDs) and whole-clip functionals in one pass.

:class:`LldExtractor` runs an openSMILE config once per signal with two external sinks, one on
the LLD level and one on the functionals level, so the LLDs are computed once (about twice as
fast as two ``opensmile.Smile`` calls). It uses the same native library, configs and option
conventions as ``opensmile.Smile`` (opensmile 2.6), so the built-in sets give identical values.

Feature sets: ``ComParE_2016`` (65 LLDs, 6373 functionals), ``eGeMAPSv02`` (25 LLDs, 88
functionals), ``emo_large`` (avfer's reconstruction of openSMILE 2.x's emo_large, shipped in
``avfer/audio/configs/``: 56 LLDs with deltas and delta-deltas = 168 LLD columns, 6552
functionals), or the path of a custom ``.conf``. A custom conf follows the template of
``opensmile.Smile``: it reads ``\\{\\cm[source{?}:source include config]}``, ends with
``\\{\\cm[sink{?}:include external sink]}``, and names its LLD and functionals levels
(``writer.dmLevel``); pass those names as ``lld_level`` / ``functionals_level``
(``functionals_level=None``: clip mean and standard deviation of every LLD instead). A legacy
``SMILExtract`` conf is adapted (as the shipped emo_large is) by replacing its ``cWaveSource``
with the source include and its file sinks (``cArffSink``/``cCsvSink``) with the sink include.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avfer.errors import AvferError
from avfer.video import GRID_FPS

BUILTIN_SETS: dict[str, tuple[str, str, float]] = {
    # name -> (where the config lies: the opensmile package's config root or avfer's shipped
    # configs/, its path there, window (s) of the energy/spectral LLDs)
    "ComParE_2016": ("opensmile", "compare/ComParE_2016.conf", 0.020),
    "eGeMAPSv02": ("opensmile", "egemaps/v02/eGeMAPSv02.conf", 0.020),
    "emo_large": ("avfer", "emo_large.conf", 0.025),
}
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"
LLD_SINK = "extsinklld"
FUNC_SINK = "extsinkfunc"
SINGLE_SINK = "extsink"
SOURCE = "extsource"


class FeatureSetError(AvferError):
    """An openSMILE feature set or config that cannot be used (the message names it)."""


@dataclass(frozen=True)
class LldOutput:
    """What openSMILE computed for one signal."""

    lld: np.ndarray
    """float32 [N, D] LLD frames (raw openSMILE values)."""
    start: np.ndarray
    """float64 [N] start time (s) of each LLD frame, relative to the first sample."""
    window: float
    """Analysis window (s) whose centre (``start + window / 2``) stands for the frame's time."""
    functionals: np.ndarray
    """float32 [D'] whole-signal functionals."""


def _opensmile_root() -> Path:
    import opensmile

    return Path(opensmile.__file__).resolve().parent / "core" / "config"


def resolve_feature_set(feature_set: str) -> tuple[Path, float | None]:
    """Config file of a built-in set name or a custom ``.conf`` path, and its default window."""
    if feature_set in BUILTIN_SETS:
        where, rel, window = BUILTIN_SETS[feature_set]
        return (_opensmile_root() if where == "opensmile" else SHIPPED_CONFIGS) / rel, window
    path = Path(feature_set)
    if path.suffix != ".conf":
        raise FeatureSetError(
            f"audio.feature_set {feature_set!r} is neither a built-in set {sorted(BUILTIN_SETS)} "
            "nor the path of an openSMILE .conf file"
        )
    if not path.is_file():
        raise FeatureSetError(f"{path}: openSMILE config file (audio.feature_set) does not exist")
    return path.resolve(), None


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (records which custom conf made a cache)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class LldExtractor:
    """Compute LLDs and functionals of mono signals with one openSMILE config.

    Args:
        feature_set: ``ComParE_2016``, ``eGeMAPSv02``, ``emo_large`` or a custom ``.conf`` path.
        lld_level: the config's LLD level (``lld`` in the built-in sets).
        functionals_level: its functionals level (``func``), or None for LLD mean/stddev.
        sample_rate: sample rate of the signals (Hz).
        lld_window: window (s) that locates an LLD frame at ``start + window / 2``; None = the
            built-in set's energy/spectral window (20 ms), else openSMILE's reported frame length.
    """

    def __init__(
        self,
        feature_set: str = "ComParE_2016",
        *,
        lld_level: str = "lld",
        functionals_level: str | None = "func",
        sample_rate: int = 16000,
        lld_window: float | None = None,
    ) -> None:
        self.feature_set = feature_set
        self.config_path, default_window = resolve_feature_set(feature_set)
        self.lld_level = lld_level
        self.functionals_level = functionals_level
        self.sample_rate = int(sample_rate)
        self.lld_window = lld_window if lld_window is not None else default_window
        smile = self._open()
        try:
            self.lld_names = self._names(smile, self._lld_sink)
            if functionals_level is None:
                self.functional_names = [f"{n}_{s}" for n in self.lld_names for s in ("amean", "stddev")]
            else:
                self.functional_names = self._names(smile, FUNC_SINK)
        finally:
            smile.free()
        if not self.lld_names:
            raise FeatureSetError(f"{self.config_path}: LLD level {lld_level!r} has no features")

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> LldExtractor:
        """Build from the ``audio`` config section."""
        window = cfg.get("lld_window_ms")
        return cls(
            cfg.get("feature_set", "ComParE_2016"),
            lld_level=cfg.get("lld_level", "lld"),
            functionals_level=cfg.get("functionals_level", "func"),
            sample_rate=cfg.get("sample_rate", 16000),
            lld_window=None if window is None else float(window) / 1000.0,
        )

    @property
    def _lld_sink(self) -> str:
        return SINGLE_SINK if self.functionals_level is None else LLD_SINK

    def _options(self) -> dict[str, Any]:
        root = _opensmile_root()
        opts: dict[str, Any] = {
            "source": root / "shared/standard_external_wave_input.conf.inc",
            "bufferModeRbConf": root / "shared/BufferModeRb.conf.inc",
            "frameModeFunctionalsConf": root / "shared/FrameModeFunctionals.conf.inc",
            "sampleRate": self.sample_rate,
            "nBits": 16,
        }
        if self.functionals_level is None:
            opts["sink"] = root / "shared/standard_external_data_output_single.conf.inc"
            opts["sinkLevel"] = self.lld_level
        else:
            opts["sink"] = root / "shared/standard_external_data_output_multi.conf.inc"
            opts["sinkLevelLLD"] = self.lld_level
            opts["sinkLevelFunc"] = self.functionals_level
        return {k: str(v) for k, v in opts.items()}

    def _open(self) -> Any:
        """A fresh, initialised openSMILE instance (one per signal: no state carried over)."""
        from opensmile.core.lib import OpenSMILE, OpenSmileException

        smile = OpenSMILE()
        fd, log_path = tempfile.mkstemp(prefix="avfer-smile-", suffix=".log")
        os.close(fd)
        try:
            smile.initialize(
                config_file=str(self.config_path), options=self._options(), loglevel=1, log_file=log_path
            )
        except OpenSmileException as exc:
            smile.free()
            errs = [
                ln.strip() for ln in Path(log_path).read_text(errors="replace").splitlines() if "(ERR)" in ln
            ]
            why = errs[-1].split("] ", 1)[-1] if errs else str(exc)
            raise FeatureSetError(
                f"{self.config_path}: openSMILE cannot use this config with LLD level "
                f"{self.lld_level!r} and functionals level {self.functionals_level!r} ({why}); "
                "check audio.feature_set / audio.lld_level / audio.functionals_level"
            ) from None
        finally:
            Path(log_path).unlink(missing_ok=True)
        return smile

    @functools.cached_property
    def fits_grid_frame(self) -> bool:
        """Whether a 40 ms signal (one 25 fps grid frame) gives an LLD frame (not for sets whose LLD
        level joins contours of longer windows, e.g. ComParE's and eGeMAPS's 60 ms pitch);
        measured once per extractor."""
        return bool(len(self(np.zeros(self.sample_rate // int(GRID_FPS), np.float32)).lld))

    @staticmethod
    def _names(smile: Any, sink: str) -> list[str]:
        return [
            smile.external_sink_get_element_name(sink, i)
            for i in range(smile.external_sink_get_num_elements(sink))
        ]

    def __call__(self, signal: np.ndarray) -> LldOutput:
        """LLDs, their frame times and the functionals of a mono float signal in [-1, 1]."""
        pcm = (np.clip(np.asarray(signal, dtype=np.float32), -1.0, 32767 / 32768) * 32768).astype("<i2")
        frames: list[np.ndarray] = []
        times: list[float] = []
        lengths: list[float] = []
        funcs: list[np.ndarray] = []

        def on_lld(data: np.ndarray, meta: Any) -> None:
            frames.append(np.array(data, dtype=np.float32).reshape(-1))
            times.append(float(meta.time))
            lengths.append(float(meta.lengthSec))

        def on_func(data: np.ndarray, meta: Any) -> None:
            funcs.append(np.array(data, dtype=np.float32).reshape(-1))

        smile = self._open()
        try:
            smile.external_sink_set_callback_ex(self._lld_sink, on_lld)
            if self.functionals_level is not None:
                smile.external_sink_set_callback_ex(FUNC_SINK, on_func)
            if len(pcm):
                smile.external_audio_source_write_data(SOURCE, pcm.tobytes())
            smile.external_audio_source_set_eoi(SOURCE)
            smile.run()
        finally:
            smile.free()
        d = len(self.lld_names)
        lld = np.vstack(frames) if frames else np.zeros((0, d), np.float32)
        start = self._frame_starts(np.asarray(times))
        window = self.lld_window if self.lld_window is not None else (lengths[0] if lengths else 0.0)
        if self.functionals_level is None:
            functionals = _mean_std(lld)
        elif funcs:
            functionals = funcs[-1]
        else:  # openSMILE emits no functionals for a signal shorter than one frame
            functionals = np.zeros(len(self.functional_names), np.float32)
        return LldOutput(lld=lld, start=start, window=float(window), functionals=functionals)

    @staticmethod
    def _frame_starts(times: np.ndarray) -> np.ndarray:
        """Frame starts ``t0 + n * hop``: openSMILE frames are evenly spaced, but the times it
        reports for the last frames of a concatenated level can repeat."""
        if len(times) < 2:
            return times.astype(np.float64)
        hop = float(np.round(np.median(np.diff(times)), 6))
        return times[0] + hop * np.arange(len(times), dtype=np.float64)


def _mean_std(lld: np.ndarray) -> np.ndarray:
    """Per-LLD clip mean and standard deviation, interleaved like ``<name>_amean, <name>_stddev``."""
    if len(lld) == 0:
        return np.zeros(2 * lld.shape[1], np.float32)
    x = lld.astype(np.float64)
    return np.stack([x.mean(0), x.std(0)], axis=1).reshape(-1).astype(np.float32)
