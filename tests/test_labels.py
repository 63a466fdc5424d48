"""Canonical label order and alias parsing."""

import pytest

from avfer.labels import EMOTIONS, LabelError, canonical, label_index


def test_canonical_order_is_fixed():
    assert EMOTIONS == ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")


@pytest.mark.parametrize(
    ("raw", "want"),
    [("angry", "Angry"), ("ANG", "Angry"), (" Happiness ", "Happy"), ("fearful", "Fear"),
     ("surprised", "Surprise"), ("Neutral", "Neutral"), ("sadness", "Sad"), ("disgust", "Disgust")],
)  # fmt: skip
def test_aliases(raw, want):
    assert canonical(raw) == want
    assert label_index(raw) == EMOTIONS.index(want)


def test_unknown_label_names_source():
    with pytest.raises(LabelError, match=r"clips/x\.csv: unknown emotion label 'Contempt'"):
        canonical("Contempt", source="clips/x.csv")
