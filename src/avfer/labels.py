"""The one canonical label order of the project, and parsing of label spellings."""

from __future__ import annotations

from avfer.errors import AvferError

EMOTIONS: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
NUM_CLASSES = len(EMOTIONS)

# Spellings seen in public datasets, mapped to the canonical names (lower-case keys).
_ALIASES: dict[str, str] = {
    "anger": "Angry",
    "angry": "Angry",
    "ang": "Angry",
    "disgust": "Disgust",
    "disgusted": "Disgust",
    "dis": "Disgust",
    "fear": "Fear",
    "fearful": "Fear",
    "afraid": "Fear",
    "fea": "Fear",
    "happy": "Happy",
    "happiness": "Happy",
    "joy": "Happy",
    "hap": "Happy",
    "neutral": "Neutral",
    "neu": "Neutral",
    "sad": "Sad",
    "sadness": "Sad",
    "surprise": "Surprise",
    "surprised": "Surprise",
    "sur": "Surprise",
}


class LabelError(AvferError, ValueError):
    """A label that is not one of the canonical emotions."""


def canonical(label: str, *, source: str = "") -> str:
    """Return the canonical emotion name for ``label`` (case-insensitive, common aliases).

    ``source`` names the file the label came from, for the error message.
    """
    key = str(label).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    where = f"{source}: " if source else ""
    raise LabelError(f"{where}unknown emotion label {label!r}; expected one of {', '.join(EMOTIONS)}")


def label_index(label: str, *, source: str = "") -> int:
    """Index of ``label`` in :data:`EMOTIONS`."""
    return EMOTIONS.index(canonical(label, source=source))
