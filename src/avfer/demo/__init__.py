"""Deterministic AFEW-style demo dataset: real-looking faces, speech-like audio, FER2013 csv.

``make_demo(out_dir, seed=0, ...)`` writes::

    Train_AFEW/<Emotion>/<id>.avi   Val_AFEW/<Emotion>/<id>.avi   Test_AFEW/<id>.avi
    demo_truth.csv   (every clip, test labels included; plus the design columns)
    fer2013.csv      (emotion,pixels,Usage; FER2013 label order, 48x48 grey)

Videos are 25 fps, ``frame_size`` square, mpeg4 (XVID tag) in .avi with 16 kHz mono
pcm_s16le audio, ``min_seconds``..``max_seconds`` long. ``no_audio_clips`` clips (train/val)
have no audio stream at all, and in ``face_exit_clips`` clips the face slides out of view
for 0.5-1 s and comes back. Ids are unique random 6-digit strings. Output depends only on
the arguments: every clip has its own generator seeded from (seed, clip index), and ffmpeg
runs single-threaded with bitexact flags, so files are byte-identical across runs.

Design: each class is a (face group, voice group) pair, so each modality alone confuses
some classes and only both together separate all seven (fusion measurably helps).

============  ============  ============  ============================================
Class         Face group    Voice group   Carried by
============  ============  ============  ============================================
Happy         smile         high_fast     face (the only smile)
Angry         frown         loud          voice (the only loud voice)
Sad           neutral       low_slow      voice (the only low, slow voice)
Fear          surprised     high_fast     both (face: vs Surprise; voice: vs Happy)
Surprise      surprised     flat          both (face: vs Neutral/Disgust; voice: Fear)
Disgust       frown         flat          both (face: vs Neutral/Surprise; voice: Angry)
Neutral       neutral       flat          both (face: vs Disgust/Surprise; voice: Sad)
============  ============  ============  ============================================

Face-only accuracy is at most 4/7 (one guess per face group; FER2013 images can only
teach the four face groups: Angry/Disgust, Fear/Surprise and Neutral/Sad look alike),
voice-only likewise 4/7, and both together can reach 100%.

Faces (:mod:`avfer.demo.faces`): the real photo ``skimage.data.astronaut()`` (which MTCNN
detects), mouth closed in the base texture, expressions as smooth landmark displacement
fields: smile = mouth corners up/out, cheeks up, teeth; frown = corners down, brows
lowered and pulled together, upper lip raised; surprised = brows raised, eyes widened,
jaw dropped with a dark open mouth; neutral = none. Intensity ramps from onset to a
random apex (x0.75-1.25); per clip: position, scale (face 45-65% of the frame height),
rotation (+-6 deg), flip, contrast/brightness/colour temperature, noise; per frame: a
smooth random head drift.

Voices (:mod:`avfer.demo.voice`), source-filter synthesis at 16 kHz:

==========  ================================  ========  ============  =============
Group       F0                                Energy    Syllables/s   Onsets
==========  ================================  ========  ============  =============
flat        120-150 Hz, little movement       medium    4             soft
loud        170-200 Hz, pitch accents         high      5             sharp
high_fast   250-300 Hz, rising, wide range    medium    7             quick
low_slow    90-110 Hz, falling                low       2.5           slow, pauses
==========  ================================  ========  ============  =============

plus per-clip speaker jitter (F0 and formants x0.9-1.1, rate x0.85-1.15, level +-2.5 dB)
and low background noise, so groups overlap a little.
"""

from avfer.demo.design import CLASS_DESIGN, FER2013_ORDER, SPLIT_DIRS, ClipSpec, plan_clips
from avfer.demo.faces import FACE_GROUPS
from avfer.demo.voice import VOICE_GROUPS
from avfer.demo.writer import TRUTH_COLUMNS, make_demo

__all__ = [
    "CLASS_DESIGN",
    "FACE_GROUPS",
    "FER2013_ORDER",
    "SPLIT_DIRS",
    "TRUTH_COLUMNS",
    "VOICE_GROUPS",
    "ClipSpec",
    "make_demo",
    "plan_clips",
]
