"""Square framing without distortion: crop boxes, padding at the borders, automatic face boxes.

A crop box is ``(x, y, size)`` in pixels of the video frame: the top-left corner and the side of a
square. It may reach outside the frame (negative ``x``/``y`` or past the right/bottom edge); those parts
are padded, never stretched, so a circle in the video stays a circle in the crop.

Keypoints found in a crop map back to frame pixels as ``x + (u + 1) / 2 * size`` (``u`` in [-1, 1]),
likewise for ``y``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import cv2
import numpy as np

from ml_core.errors import FommError

__all__ = [
    "CropBox",
    "FaceDetector",
    "backlash",
    "crop_square",
    "face_box_from_detections",
    "face_scale_for",
    "fill_gaps",
    "follow_boxes",
    "follow_face_for",
    "follows_face",
    "full_frame_box",
    "parse_box",
    "scan_faces",
    "user_box",
]

Face = tuple[int, int, int, int]  # x, y, w, h of a detection, frame pixels

# Side of the automatic face box over the Haar face size (plus the range the face moves over). Head and shoulders
# (1.8) suits models trained on talking-head crops (VoxCeleb: vox-256); the embedded default model was trained on
# tools/synth renders where the head fills the frame (outer eye corners ~0.55-0.6 of the side, chin at the bottom
# edge), and on real footage keypoints land on the face only with a box that tight: 0.8 was chosen on real clips
# (bench/eval_real_footage.py, bench/RESULTS.md).
FACE_SCALE = 1.8
SYNTH_FACE_SCALE = 0.8
# A box that follows the face (crop "follow"): its side over the Haar face size, with no allowance for motion. 1.0
# frames a face like the tools/synth training renders (outer eye corners ~0.5-0.55 of the side on real video, measured
# against FaceMesh; the renders: 0.53-0.62).
FOLLOW_SCALE = 1.0
# Gaussian smoothing of the following box's path (seconds; its size 3x slower): the Haar box jitters by a few pixels
# from frame to frame, and a crop that jitters shakes the keypoints.
FOLLOW_SMOOTH_S = 0.17
# The following box stays still while the face's centre stays within this fraction of the face size of it, and
# moves only by what the face moves past that (a backlash): a crop that moves with every small motion costs blinks.
FOLLOW_DEAD_BAND = 0.05


class CropBox(NamedTuple):
    """A square crop: top-left corner ``(x, y)`` and side ``size``, frame pixels."""

    x: int
    y: int
    size: int

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.size}"


def full_frame_box(width: int, height: int) -> CropBox:
    """The whole frame, centred in a square (the short side is padded)."""
    size = max(int(width), int(height))
    return CropBox((int(width) - size) // 2, (int(height) - size) // 2, size)


def parse_box(text: str) -> CropBox:
    """``"X,Y,SIZE"`` (pixels) as a CropBox; FommError on anything else."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 3:
            raise ValueError
        x, y, size = (int(p) for p in parts)
    except ValueError:
        raise FommError(f"crop box must be X,Y,SIZE in whole pixels, got {text!r}") from None
    if size <= 0:
        raise FommError(f"crop box size must be positive, got {size}")
    return CropBox(x, y, size)


def user_box(box: Sequence[int] | str, width: int, height: int) -> CropBox:
    """Validate a user's box against a ``width`` x ``height`` frame (it must overlap the frame)."""
    if isinstance(box, str):
        b = parse_box(box)
    else:
        try:
            x, y, size = box
            b = CropBox(int(x), int(y), int(size))
        except (TypeError, ValueError):
            raise FommError(f"crop box must be (x, y, size) in pixels, got {box!r}") from None
        if b.size <= 0:
            raise FommError(f"crop box size must be positive, got {b.size}")
    if b.x >= width or b.y >= height or b.x + b.size <= 0 or b.y + b.size <= 0:
        raise FommError(f"crop box {b} lies outside the {width}x{height} frame")
    if b.size > 2 * max(width, height):  # bounds the padded crop allocated for every frame
        raise FommError(
            f"crop box size {b.size} is more than twice the {width}x{height} frame's longest side: "
            f"give a size up to {2 * max(width, height)}"
        )
    return b


def crop_square(frame: np.ndarray, box: Sequence[int], out_size: int, *, pad_value: int = 0) -> np.ndarray:
    """Cut ``box`` out of an RGB uint8 ``frame`` [H,W,3], pad what lies outside, resize to ``out_size``.

    The resize uses ``cv2.INTER_AREA``. Returns a new contiguous uint8 array [out_size, out_size, 3].
    """
    x, y, size = (int(v) for v in box)
    out_size = int(out_size)
    if size <= 0 or out_size <= 0:
        raise FommError(f"crop size and output size must be positive, got {size} and {out_size}")
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
    if x1 <= x0 or y1 <= y0:
        return np.full((out_size, out_size, 3), pad_value, dtype=np.uint8)
    region = frame[y0:y1, x0:x1]
    if (x0, y0, x1, y1) != (x, y, x + size, y + size):
        # Where the frame's edges land on whole output pixels (the usual aspect ratios: 16:9, 4:3 ...),
        # resizing the frame part alone and padding afterwards gives identical pixels for less work.
        edges = np.array([x0 - x, y0 - y, x1 - x, y1 - y], dtype=np.float64) * (out_size / size)
        whole = np.round(edges)
        if np.abs(edges - whole).max() < 1e-6 and (whole[2] > whole[0]) and (whole[3] > whole[1]):
            l, t, r, b = (int(v) for v in whole)
            out = np.full((out_size, out_size, 3), pad_value, dtype=np.uint8)
            out[t:b, l:r] = cv2.resize(region, (r - l, b - t), interpolation=cv2.INTER_AREA)
            return out
        region = cv2.copyMakeBorder(
            region, y0 - y, y + size - y1, x0 - x, x + size - x1, cv2.BORDER_CONSTANT, value=(pad_value,) * 3
        )
    if size == out_size:
        return np.ascontiguousarray(region)
    return cv2.resize(region, (out_size, out_size), interpolation=cv2.INTER_AREA)


class FaceDetector:
    """OpenCV's frontal-face Haar cascade (ships with opencv-python(-headless) 4.x).

    Calling it on an RGB frame returns the largest face ``(x, y, w, h)`` in frame pixels, or None.
    Frames are searched at most ``max_side`` pixels on their long side (speed); faces smaller than
    ``min_fraction`` of the short side are ignored.
    """

    def __init__(
        self,
        *,
        max_side: int = 640,
        min_fraction: float = 0.08,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        cascade: str | os.PathLike | None = None,
    ) -> None:
        if cascade is None:
            base = getattr(getattr(cv2, "data", None), "haarcascades", None)
            cascade = os.path.join(base, "haarcascade_frontalface_default.xml") if base is not None else None
        if not hasattr(cv2, "CascadeClassifier") or cascade is None or not os.path.exists(cascade):
            # OpenCV 5 dropped both the classifier and the cascade files; some builds lack cv2.data.
            raise FommError(
                f"this OpenCV ({cv2.__version__}) has no Haar face detector; install opencv-python-headless 4.x "
                "or give a crop box (--crop X,Y,SIZE or --crop full)"
            )
        try:
            self._cascade = cv2.CascadeClassifier(str(cascade))
            loaded = not self._cascade.empty()
        except (cv2.error, SystemError):  # a damaged file: OpenCV raises instead of returning an empty classifier
            loaded = False
        if not loaded:
            raise FommError(f"cannot load the face detector {cascade}; use --crop full or --crop X,Y,SIZE")
        self.max_side = int(max_side)
        self.min_fraction = float(min_fraction)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)

    def __call__(self, frame: np.ndarray) -> Face | None:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            small = (max(1, round(w * scale)), max(1, round(h * scale)))
            gray = cv2.resize(gray, small, interpolation=cv2.INTER_AREA)
        # No histogram equalisation: it turns compression noise on flat shapes into false faces.
        min_px = max(12, int(self.min_fraction * min(gray.shape[:2])))
        if min(gray.shape[:2]) < min_px:
            return None
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_px, min_px)
        )
        if len(found) == 0:
            return None
        fx, fy, fw, fh = max((tuple(int(v) for v in f) for f in found), key=lambda f: f[2] * f[3])
        inv = 1.0 / scale
        return round(fx * inv), round(fy * inv), round(fw * inv), round(fh * inv)


def fill_gaps(detections: Sequence[Face | None]) -> list[Face] | None:
    """Replace each missing detection by the last good one (leading gaps take the first good one).

    Returns None when there is no detection at all.
    """
    first = next((d for d in detections if d is not None), None)
    if first is None:
        return None
    out: list[Face] = []
    last = first
    for d in detections:
        if d is not None:
            last = d
        out.append(last)
    return out


def face_box_from_detections(
    detections: Sequence[Face | None],
    width: int,
    height: int,
    *,
    scale: float = FACE_SCALE,
    shift_y: float = 0.05,
    coverage: tuple[float, float] = (5.0, 95.0),
) -> CropBox | None:
    """One steady square box for a whole clip from per-frame face detections (None where none).

    Missing detections keep the last good box (:func:`fill_gaps`). The box is centred on the range the
    face centre covers (``coverage`` percentiles, so a few false detections do not move it), its side is
    ``scale`` times the median face size plus that range, so the face stays inside while the performer
    moves; ``shift_y`` moves it down by that fraction of the face size (the Haar box sits high on the
    face). A fixed box keeps head translation in the keypoints, which is what animators want to capture.
    Returns None when no face was found anywhere.
    """
    filled = fill_gaps(detections)
    if filled is None:
        return None
    f = np.asarray(filled, dtype=np.float64)
    cx = f[:, 0] + f[:, 2] / 2.0
    cy = f[:, 1] + f[:, 3] / 2.0
    face = float(np.median(np.maximum(f[:, 2], f[:, 3])))
    lo, hi = coverage
    x_lo, x_hi = np.percentile(cx, [lo, hi])
    y_lo, y_hi = np.percentile(cy, [lo, hi])
    size = scale * face + max(x_hi - x_lo, y_hi - y_lo)
    size = max(8.0, min(size, 2.0 * max(width, height)))
    centre_x = (x_lo + x_hi) / 2.0
    centre_y = (y_lo + y_hi) / 2.0 + shift_y * face
    side = round(size)
    return CropBox(round(centre_x - side / 2.0), round(centre_y - side / 2.0), side)


def follow_boxes(
    positions: Sequence[int],
    detections: Sequence[Face | None],
    count: int,
    *,
    scale: float = FOLLOW_SCALE,
    sigma: float = 0.0,
    shift_y: float = 0.05,
    dead_band: float = FOLLOW_DEAD_BAND,
) -> np.ndarray | None:
    """Square boxes [count, 3] (``x, y, size``, whole pixels) that follow the face over ``count`` samples.

    ``detections[i]`` is the face found on sample ``positions[i]`` (None where none; positions increasing). A
    detection that jumps away from its neighbours (a false alarm, another face) is outvoted by a running median over
    5 detections; the centre and size are interpolated between detections (held before the first and after the
    last) and smoothed with a Gaussian of ``sigma`` samples (the size with ``3 * sigma``). The box's centre then
    stays still while the face's centre stays within ``dead_band`` x the face size of it, and moves only by what the
    face moves past that (:func:`backlash`). The side is ``scale`` times the face size, the centre moved down by
    ``shift_y`` of it (the Haar box sits high on the face), like :func:`face_box_from_detections` but with no
    allowance for motion: the crop moves with the face instead. Returns None when no face was found anywhere.
    """
    from scipy.ndimage import gaussian_filter1d, median_filter

    found = [(int(p), d) for p, d in zip(positions, detections, strict=True) if d is not None]
    if not found or count < 1:
        return None
    at = np.array([p for p, _ in found], dtype=np.float64)
    f = np.array([d for _, d in found], dtype=np.float64)
    tracks = [f[:, 0] + f[:, 2] / 2.0, f[:, 1] + f[:, 3] / 2.0, np.maximum(f[:, 2], f[:, 3])]
    if len(found) >= 3:
        tracks = [median_filter(v, size=min(5, len(v) - (1 - len(v) % 2)), mode="nearest") for v in tracks]
    grid = np.arange(int(count), dtype=np.float64)
    cx, cy, face = (np.interp(grid, at, v) for v in tracks)
    if sigma > 0 and count > 1:
        cx = gaussian_filter1d(cx, sigma, mode="nearest")
        cy = gaussian_filter1d(cy, sigma, mode="nearest")
        face = gaussian_filter1d(face, 3.0 * sigma, mode="nearest")
    if dead_band > 0:
        cx = backlash(cx, dead_band * face)
        cy = backlash(cy, dead_band * face)
    side = np.maximum(np.round(float(scale) * face), 8.0)
    x = np.round(cx - side / 2.0)
    y = np.round(cy + shift_y * face - side / 2.0)
    return np.column_stack([x, y, side]).astype(np.int64)


def backlash(path: np.ndarray, band: np.ndarray | float) -> np.ndarray:
    """``path`` [T] followed with play ``band`` (per sample or one value): the output starts at ``path[0]``, stays
    still while ``path`` stays within ``band`` of it, and is dragged along by what ``path`` moves past that."""
    path = np.asarray(path, dtype=np.float64)
    band = np.broadcast_to(np.asarray(band, dtype=np.float64), path.shape)
    out = np.empty_like(path)
    held = float(path[0]) if len(path) else 0.0
    for t, (p, b) in enumerate(zip(path.tolist(), band.tolist(), strict=True)):
        held = min(max(held, p - b), p + b)
        out[t] = held
    return out


def follow_face_for(config: dict | None) -> bool:
    """Whether crop "auto" follows the face for a model's configuration: ``dataset_params.face_box_follow`` when
    the configuration names it, else True for the ``default-*`` configurations (trained on heads that fill the
    frame, which a steady box cannot give a moving performer) and False for the others (head-and-shoulders crops)."""
    cfg = config or {}
    given = (cfg.get("dataset_params") or {}).get("face_box_follow")
    if given is not None:
        if not isinstance(given, bool):
            raise FommError(f"dataset_params.face_box_follow must be true or false, got {given!r}")
        return given
    return str(cfg.get("name") or "").startswith("default-")


def follows_face(crop: object, config: dict | None) -> bool:
    """Whether a crop setting (``"follow"``, or ``"auto"`` for a model that follows: :func:`follow_face_for`)
    crops every frame around the face."""
    return crop == "follow" or (crop == "auto" and follow_face_for(config))


def face_scale_for(config: dict | None) -> float:
    """The automatic face box's ``scale`` for a model's configuration.

    ``dataset_params.face_box_scale`` when the configuration names one; :data:`SYNTH_FACE_SCALE` for the
    ``default-*`` configurations (trained on ``tools/synth`` renders, a head filling the frame); else
    :data:`FACE_SCALE` (head and shoulders, like the authors' VoxCeleb crops).
    """
    cfg = config or {}
    given = (cfg.get("dataset_params") or {}).get("face_box_scale")
    if given is not None:
        try:
            value = float(given)
        except (TypeError, ValueError):
            value = float("nan")
        if not np.isfinite(value) or value <= 0:
            raise FommError(f"dataset_params.face_box_scale must be a positive number, got {given!r}")
        return value
    if str(cfg.get("name") or "").startswith("default-"):
        return SYNTH_FACE_SCALE
    return FACE_SCALE


def scan_faces(
    frames: Iterable[np.ndarray],
    detector: Callable[[np.ndarray], Face | None] | None = None,
) -> list[Face | None]:
    """Run ``detector`` (default :class:`FaceDetector`) on each frame; None where no face is found."""
    detector = detector or FaceDetector()
    return [detector(frame) for frame in frames]
