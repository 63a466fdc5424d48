"""Face rendering for the demo dataset: a real photo, warped into four expression groups.

The source is ``skimage.data.astronaut()`` (a real face that MTCNN detects). Expressions are
smooth displacement fields (sums of Gaussian bumps at facial landmarks) applied by backward
mapping; every frame is one similarity transform (position, scale, rotation, flip) composed
with the expression field, sampled bilinearly in numpy (a few ms per 160x160 frame).
The photo smiles with open lips, so the base texture has the mouth closed (teeth band
removed) and a fixed "neutralise" field lowers the mouth corners; each group adds its field
on top, and smile / surprised blend the teeth / a dark open-mouth cavity back in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from avfer.demo.warp import bilinear, reflect, upsample, upsampler

FACE_GROUPS: tuple[str, ...] = ("neutral", "smile", "frown", "surprised")

# MTCNN on astronaut(): box [181, 62, 268, 172]; centre and height in source pixels.
FACE_CENTER = (224.4, 117.1)
FACE_HEIGHT = 110.0

# (x, y, dx, dy, sigma_x, sigma_y): forward displacement of the feature at (x, y), in
# source pixels, spread by an (anisotropic) Gaussian.
_Bump = tuple[float, float, float, float, float, float]
_NEUTRALISE: list[_Bump] = [
    (204, 141, 1.5, 3.5, 6.0, 8.0),  # mouth corners down and in
    (244, 142, -1.5, 3.0, 6.0, 8.0),
]
_GROUP_BUMPS: dict[str, list[_Bump]] = {
    "neutral": [],
    "smile": [
        (204, 141, -3.0, -6.0, 7.0, 7.0),  # corners up and out
        (244, 142, 3.0, -6.0, 7.0, 7.0),
        (198, 128, 0.0, -3.5, 9.0, 9.0),  # cheeks raised
        (251, 130, 0.0, -3.5, 9.0, 9.0),
        (205, 108, 0.0, -1.5, 6.0, 3.0),  # lower lids up (squint)
        (247, 110, 0.0, -1.5, 6.0, 3.0),
    ],
    "frown": [
        (204, 144, 1.5, 5.0, 7.0, 10.0),  # corners down
        (244, 145, -1.5, 5.0, 7.0, 10.0),
        (224, 138, 0.0, -2.0, 9.0, 4.0),  # upper lip raised
        (213, 90, 3.5, 6.0, 8.0, 8.0),  # inner brows down and together
        (235, 92, -3.5, 6.0, 8.0, 8.0),
        (195, 91, 0.0, 2.5, 7.0, 7.0),  # outer brows down
        (256, 94, 0.0, 2.5, 7.0, 7.0),
    ],
    "surprised": [
        (204, 87, 0.0, -7.0, 10.0, 10.0),  # brows raised
        (247, 89, 0.0, -7.0, 10.0, 10.0),
        (205, 98, 0.0, -2.0, 7.0, 5.0),  # upper lids up: eyes wide
        (247, 100, 0.0, -2.0, 7.0, 5.0),
        (205, 110, 0.0, 1.2, 7.0, 5.0),  # lower lids down
        (247, 112, 0.0, 1.2, 7.0, 5.0),
        (224, 150, 0.0, 7.0, 12.0, 7.0),  # jaw drops: mouth open
        (224, 175, 0.0, 6.0, 18.0, 12.0),
        (204, 141, 4.0, 2.0, 6.0, 6.0),  # corners in
        (244, 142, -4.0, 2.0, 6.0, 6.0),
    ],
}
# Weight slots: 0 = the neutraliser (always 1), then one per face group.
_N_SLOTS = 1 + len(FACE_GROUPS)


def _bump_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All bumps as centres (K, 2), inverse 2*sigma^2 (K, 2), vectors (K, 2), slots (K,)."""
    rows = [(0, b) for b in _NEUTRALISE]
    rows += [(1 + g, b) for g, name in enumerate(FACE_GROUPS) for b in _GROUP_BUMPS[name]]
    arr = np.array([b for _, b in rows], np.float32)
    slots = np.array([s for s, _ in rows], np.int64)
    return arr[:, :2], 1 / (2 * arr[:, 4:6] ** 2), arr[:, 2:4], slots


_CENTRES, _INV2S2, _VECTORS, _SLOTS = _bump_table()
_REACH = 3.5 / np.sqrt(2 * _INV2S2)  # beyond 3.5 sigma a bump is negligible
_FIELD_X0, _FIELD_Y0 = np.floor((_CENTRES - _REACH).min(axis=0)).astype(int)
_FIELD_X1, _FIELD_Y1 = np.ceil((_CENTRES + _REACH).max(axis=0)).astype(int)
_FIELD_SHAPE = (int(_FIELD_Y1 - _FIELD_Y0 + 1), int(_FIELD_X1 - _FIELD_X0 + 1))


@lru_cache(maxsize=1)
def _field_table() -> np.ndarray:
    """Displacement of every slot at every source pixel of the field box: (H*W, slots*2)."""
    h, w = _FIELD_SHAPE
    yy, xx = np.mgrid[_FIELD_Y0 : _FIELD_Y1 + 1, _FIELD_X0 : _FIELD_X1 + 1].astype(np.float32)
    table = np.zeros((h, w, _N_SLOTS, 2), np.float32)
    for (cx, cy), (ax, ay), vec, slot in zip(_CENTRES, _INV2S2, _VECTORS, _SLOTS, strict=True):
        table[:, :, slot] += np.exp(-((xx - cx) ** 2) * ax - (yy - cy) ** 2 * ay)[..., None] * vec
    return table.reshape(h * w, _N_SLOTS * 2)


def displacement(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Forward expression displacement (P, 2) at source points (x, y) for slot ``weights``."""
    near = np.flatnonzero((x > _FIELD_X0) & (x < _FIELD_X1) & (y > _FIELD_Y0) & (y < _FIELD_Y1))
    d = bilinear(_field_table(), _FIELD_SHAPE, x[near] - _FIELD_X0, y[near] - _FIELD_Y0)
    out = np.zeros((len(x), 2), np.float32)
    out[near] = np.einsum("psc,s->pc", d.reshape(-1, _N_SLOTS, 2), weights.astype(np.float32))
    return out


_MOUTH_X0, _MOUTH_X1 = 204.0, 244.5  # mouth corners (source x)
_MOUTH_SAG, _MOUTH_H = 5.5, 5.0  # the lip line sags 5.5 px at the centre; teeth 5 px tall


def _mouth_textures(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-mouth and open-mouth versions of the (H, W, 3) photo.

    Closed: in each mouth column the teeth band is skipped by pulling the lower lip (and
    the skin below it) up to the upper lip, with a faint seam. Open: the lower part of the
    teeth band becomes a dark mouth cavity (the jaw-drop warp then widens it).
    """
    from scipy.ndimage import map_coordinates

    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rel = np.clip(1 - ((2 * xx - _MOUTH_X0 - _MOUTH_X1) / (_MOUTH_X1 - _MOUTH_X0)) ** 2, 0, 1)
    centre = 141.2 + _MOUTH_SAG * rel  # the smile curve between the corners
    width = _MOUTH_H * np.sqrt(rel)
    t0, t1 = centre - width / 2 - 0.5 * (rel > 0), centre + width / 2 + 0.5 * (rel > 0)
    end = t1 + 10
    inside = (yy >= t0) & (yy <= end) & (width > 0)
    src_y = np.where(inside, t1 + (yy - t0) * (end - t1) / np.maximum(end - t0, 1e-3), yy)
    closed = np.stack(
        [map_coordinates(img[..., c], [src_y, xx], order=1, mode="nearest") for c in range(3)],
        axis=-1,
    )
    seam = np.exp(-((yy - t0) ** 2) / (2 * 0.8**2)) * np.clip(width / _MOUTH_H, 0, 1) ** 0.5
    closed *= 1 - 0.3 * seam[..., None]
    cavity = np.clip((yy - t0 - 0.35 * width) / 1.5, 0, 1) * np.clip(t1 + 1 - yy, 0, 1)
    cavity = gaussian_filter(cavity * np.clip(width - 1, 0, 1), 0.7)
    dark = np.array([70, 25, 25], np.float32)
    opened = img * (1 - cavity[..., None]) + dark * cavity[..., None]
    return closed.astype(np.float32), opened.astype(np.float32)


@lru_cache(maxsize=1)
def _source() -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The photo, lightly blurred against aliasing, as a (H*W, 3) float32 closed-mouth
    table, a (H*W, 6) table of the teeth (smile) and cavity (open mouth) RGB differences
    to add, and the box (x0, y0, x1, y1) outside which those differences are zero."""
    from skimage import data

    img = gaussian_filter(data.astronaut().astype(np.float32), sigma=(0.6, 0.6, 0))
    closed, opened = _mouth_textures(img)
    delta = np.concatenate([img - closed, opened - closed], axis=-1)
    ys, xs = np.nonzero(np.abs(delta).max(axis=-1) > 0.01)
    box = (int(xs.min()) - 1, int(ys.min()) - 1, int(xs.max()) + 2, int(ys.max()) + 2)
    return closed.reshape(-1, 3), np.ascontiguousarray(delta.reshape(-1, 6)), box


_SRC_N = 512  # astronaut() is 512 x 512


@dataclass(frozen=True)
class Pose:
    """Where the face sits in an output image: centre (pixels), face height (pixels),
    in-plane rotation (degrees) and horizontal flip."""

    cx: float
    cy: float
    face_px: float
    angle: float = 0.0
    flip: bool = False


def source_map(pose: Pose, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (x, y), each (size, size), sampled by every output pixel.

    The similarity part is exact; the smooth expression field is evaluated every 2 pixels
    and interpolated linearly.
    """
    coarse, j, f = upsampler(size, 2)
    v, u = np.meshgrid(coarse, coarse, indexing="ij")
    s = FACE_HEIGHT / pose.face_px
    a = np.deg2rad(pose.angle)
    ca, sa = np.float32(s * np.cos(a)), np.float32(s * np.sin(a))
    du, dv = u.ravel() - np.float32(pose.cx), v.ravel() - np.float32(pose.cy)
    sx = ca * du - sa * dv + np.float32(FACE_CENTER[0])
    sy = sa * du + ca * dv + np.float32(FACE_CENTER[1])
    disp = displacement(sx, sy, weights)
    nc = len(coarse)
    gx = upsample((sx - disp[:, 0]).reshape(nc, nc), j, f)
    gy = upsample((sy - disp[:, 1]).reshape(nc, nc), j, f)
    return gx, gy


def render(pose: Pose, weights: np.ndarray, size: int) -> np.ndarray:
    """Render one ``size`` x ``size`` RGB float32 image (0..255, not clipped).

    ``weights`` has one entry per slot: the neutraliser, then each of ``FACE_GROUPS``.
    """
    closed, delta, (x0, y0, x1, y1) = _source()
    gx, gy = source_map(pose, weights, size)
    x, y = gx.ravel(), gy.ravel()
    if x.min() < 0 or y.min() < 0 or x.max() > _SRC_N - 1 or y.max() > _SRC_N - 1:
        x, y = reflect(x, _SRC_N), reflect(y, _SRC_N)
    out = bilinear(closed, (_SRC_N, _SRC_N), x, y)
    mouth = np.flatnonzero((x > x0) & (x < x1) & (y > y0) & (y < y1))
    teeth = np.clip(weights[1 + FACE_GROUPS.index("smile")], 0, 1)
    cavity = np.clip(weights[1 + FACE_GROUPS.index("surprised")], 0, 1)
    if len(mouth) and (teeth > 0 or cavity > 0):
        d = bilinear(delta, (_SRC_N, _SRC_N), x[mouth], y[mouth])
        out[mouth] += np.float32(teeth) * d[:, :3] + np.float32(cavity) * d[:, 3:]
    out = out.reshape(size, size, 3)
    return out[:, ::-1] if pose.flip else out


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _ou_walk(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    """Smooth, mean-reverting random walk with roughly unit standard deviation."""
    eps = rng.standard_normal((n + 50, dims))
    x = np.zeros_like(eps)
    for t in range(1, len(eps)):
        x[t] = 0.93 * x[t - 1] + 0.37 * eps[t]
    return gaussian_filter1d(x[50:], sigma=3.0, axis=0, mode="nearest") / 0.8


def expression_weights(group: str, intensity: np.ndarray, idle: np.ndarray) -> np.ndarray:
    """Per-frame field weights (n, F): neutraliser 1, ``group`` at ``intensity``, plus a
    small constant per-clip ``idle`` mix of all groups."""
    w = np.zeros((len(intensity), _N_SLOTS), np.float32)
    w[:, 0] = 1.0
    w[:, 1:] = idle
    w[:, 1 + FACE_GROUPS.index(group)] += intensity
    return w


def _appearance(rng: np.random.Generator) -> tuple[float, float, np.ndarray, float]:
    """Per-clip contrast, brightness, colour gains (temperature) and noise sigma."""
    temp = rng.uniform(-0.08, 0.08)
    gains = np.array([1 + temp, 1.0, 1 - temp], np.float32)
    return rng.uniform(0.75, 1.15), rng.uniform(-20, 20), gains, rng.uniform(1.0, 4.0)


def render_clip(
    group: str,
    n_frames: int,
    size: int,
    rng: np.random.Generator,
    *,
    exit_frames: tuple[int, int] | None = None,
) -> np.ndarray:
    """Render a clip as (n_frames, size, size, 3) uint8 RGB.

    Expression ramps from onset to a per-clip random apex; the head drifts (smooth random
    walk). With ``exit_frames=(a, b)`` the face is fully out of view for frames a..b-1,
    sliding out over the 6 frames before and back in over the 6 frames after.
    """
    if group not in FACE_GROUPS:
        raise ValueError(f"unknown face group {group!r}")
    face_px = rng.uniform(0.45, 0.65) * size
    room = (size - face_px) / 2
    cx = size / 2 + rng.uniform(-0.4, 0.4) * room
    cy = size / 2 + rng.uniform(-0.3, 0.3) * room
    angle0, flip = rng.uniform(-6, 6), bool(rng.integers(2))
    contrast, bright, gains, noise = _appearance(rng)
    gain, offset = contrast * gains, (128 * (1 - contrast) + bright) * gains
    apex = rng.uniform(0.75, 1.25)
    t = np.linspace(0.0, 1.0, n_frames)
    t0 = rng.uniform(0.0, 0.25)
    ramp = _smoothstep((t - t0) / rng.uniform(0.25, 0.5))
    decay = 1 - rng.uniform(0.0, 0.2) * _smoothstep((t - 0.7) / 0.3)
    weights = expression_weights(group, apex * ramp * decay, rng.uniform(-0.05, 0.15, 4))
    walk = _ou_walk(rng, n_frames, 4)
    dx = 0.02 * size * walk[:, 0]
    if exit_frames is not None:
        a, b = exit_frames
        side = 1.0 if rng.integers(2) else -1.0
        far = (size / 2 + abs(cx - size / 2) + 0.75 * face_px) * side
        frames = np.arange(n_frames)
        out = _smoothstep((frames - (a - 6)) / 6) * (1 - _smoothstep((frames - (b - 1)) / 6))
        dx = dx + far * out
    # Sensor noise: windows at random offsets into one long buffer (cheaper per frame).
    grain = rng.standard_normal(size * size * 3 + 8191, dtype=np.float32) * np.float32(noise)
    video = np.empty((n_frames, size, size, 3), np.uint8)
    for i in range(n_frames):
        pose = Pose(
            cx=cx + dx[i],
            cy=cy + 0.02 * size * walk[i, 1],
            face_px=face_px * float(np.exp(0.02 * walk[i, 2])),
            angle=angle0 + 2.0 * walk[i, 3],
            flip=flip,
        )
        frame = render(pose, weights[i], size) * gain + offset
        start = int(rng.integers(len(grain) - frame.size))
        frame += grain[start : start + frame.size].reshape(frame.shape)
        video[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return video


def render_still(group: str, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A FER2013-like grey crop (size x size uint8): face filling most of the image."""
    if group not in FACE_GROUPS:
        raise ValueError(f"unknown face group {group!r}")
    up = 3  # render at 3x and box-downsample (anti-aliasing)
    big = size * up
    face_px = big * rng.uniform(0.8, 0.95)
    pose = Pose(
        cx=big / 2 + rng.uniform(-0.05, 0.05) * big,
        cy=big / 2 + rng.uniform(-0.02, 0.08) * big,
        face_px=face_px,
        angle=rng.uniform(-10, 10),
        flip=bool(rng.integers(2)),
    )
    weights = expression_weights(group, np.array([rng.uniform(0.6, 1.3)]), rng.uniform(-0.05, 0.15, 4))
    rgb = render(pose, weights[0], big)
    grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]  # no BLAS call
    grey = grey.reshape(size, up, size, up).mean(axis=(1, 3))
    contrast, bright, _, noise = _appearance(rng)
    grey = (grey - 128) * contrast + 128 + bright + rng.standard_normal(grey.shape) * noise
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)
