"""avfer: audio-visual facial emotion recognition in video."""

from avfer.labels import EMOTIONS, NUM_CLASSES

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "NUM_CLASSES", "__version__", "predict"]


def __getattr__(name: str) -> object:
    if name == "predict":  # ``avfer.predict(path_or_array, model=...)``, imported on first use
        import importlib

        return importlib.import_module("avfer.predict")
    raise AttributeError(f"module 'avfer' has no attribute {name!r}")
