"""Driving video -> motion clip: streamed decoding, square framing, batched keypoint detection.

:func:`extract` decodes the video on a reader thread (one frame in memory at a time, cropped and
resized at once to the model's input size) that feeds batches through a small bounded queue to the
keypoint detector, which runs under ``torch.inference_mode`` (optionally in bfloat16 autocast). Memory
stays flat whatever the video's length; decoding overlaps with inference.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import os
import queue
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ml_core.clip import MotionClip
from ml_core.errors import Cancelled, FommError
from ml_core.filters import describe, smooth_motion, smoothing_params
from ml_core.framing import (
    FOLLOW_SMOOTH_S,
    CropBox,
    FaceDetector,
    crop_square,
    face_box_from_detections,
    face_scale_for,
    follow_boxes,
    follows_face,
    full_frame_box,
    user_box,
)
from ml_core.geometry import fit_similarity_batch
from ml_core.jobs import CROP_MODES, DTYPES
from ml_core.video import VideoReader, sample_frames

if TYPE_CHECKING:
    from ml_core.model import ModelBundle

__all__ = [
    "Cancelled",
    "choose_reference_frame",
    "detect",
    "extract",
    "fast_detector",
    "find_face_box",
    "rank_reference_frames",
]

Progress = Callable[[int, int | None], None]
FACE_SAMPLES = 120  # frames sampled over the clip to place the automatic face box
FOLLOW_RATE = 1.0  # when the crop follows the face: at least this many frames searched per second of video
SEEK_STRIDE = 50  # sample the face by seeking when samples are this many frames apart (or more)
MIN_FACE_FRACTION = 0.1  # fewer detections than this share of the samples are taken for false alarms
MAX_BATCH = 4096  # frames per batch: more only costs memory (a 256-pixel batch of 4096 is 800 MB)
BLANK_STD = 2.0  # a crop whose pixels vary less than this (0-255) shows nothing: never the reference frame
REFERENCE_CANDIDATES = 8  # most typical frames checked for a face when choosing the reference frame


# -------------------------------------------------------------------------------------------- inference
def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise FommError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def check_bf16(device: Any) -> None:
    """Refuse bfloat16 inference, with a one-line error, where ``device`` cannot run it."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise FommError("this GPU has no bfloat16 support: run without --bf16 (dtype fp32)")
    if dev.type not in ("cpu", "cuda"):
        try:
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                pass
        except (RuntimeError, ValueError):
            raise FommError(f"bfloat16 autocast is not available on {dev.type}: run without --bf16") from None


_FAST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _versions(module: torch.nn.Module) -> tuple[int, ...] | None:
    try:
        return tuple(t._version for t in itertools.chain(module.parameters(), module.buffers()))
    except RuntimeError:  # inference tensors carry no version counter
        return None


class _StridedAntiAlias(torch.nn.Module):
    """The keypoint detector's anti-alias downsampling (Gaussian blur, then every k-th pixel) computed
    only where it is kept: a strided convolution, k*k times less work, the very same numbers."""

    def __init__(self, down: torch.nn.Module) -> None:
        super().__init__()
        self.register_buffer("weight", down.weight.detach().clone())
        self.pads = (int(down.ka), int(down.kb), int(down.ka), int(down.kb))
        self.groups = int(down.groups)
        self.scale = float(down.scale)
        self.stride = round(1.0 / self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(F.pad(x, self.pads), self.weight, groups=self.groups, stride=self.stride)
        # F.interpolate's output size, floor(size * scale), written so torch.fx can trace it
        return out[:, :, : x.shape[2] // self.stride, : x.shape[3] // self.stride]


def _strided_down(kp: torch.nn.Module) -> None:
    """Swap ``kp.down`` for :class:`_StridedAntiAlias` where that gives identical outputs (checked)."""
    down = getattr(kp, "down", None)
    try:
        stride = 1.0 / float(down.scale)  # type: ignore[union-attr]
        if down is None or stride <= 1 or abs(stride - round(stride)) > 1e-9:
            return
        fast = _StridedAntiAlias(down)
        probe = torch.rand(2, down.groups, 37, 42, generator=torch.Generator().manual_seed(0))
        probe = probe.to(down.weight.device)
        with torch.no_grad():
            if torch.allclose(fast(probe), down(probe), rtol=0, atol=1e-6):
                kp.down = fast
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return


def fast_detector(kp_detector: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of a keypoint detector: batch norm folded into the convolutions
    (``torch.fx.experimental.optimization.fuse``), the anti-alias downsampling computed only where it
    is kept, channels-last layout. Same outputs up to float rounding (~1e-7), about 2x faster
    batched on CPU than the plain module. The given module is left
    untouched; the copy is cached per module and rebuilt when its weights change (in-place updates
    bump tensor version counters). A module in training mode is returned as is.
    """
    if kp_detector.training:
        return kp_detector
    key = _versions(kp_detector)
    hit = _FAST.get(kp_detector)
    if hit is not None and (key is None or hit[0] == key):
        return hit[1]
    fast = copy.deepcopy(kp_detector)
    _strided_down(fast)
    try:
        with warnings.catch_warnings():  # the module imports deprecated torch.jit helpers
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.fx.experimental.optimization import fuse

        fast = fuse(fast, inplace=True)
    except Exception:  # a variant FX cannot trace: the unfused copy still gains the rest
        pass
    fast = fast.to(memory_format=torch.channels_last).eval()
    _FAST[kp_detector] = (key, fast)
    return fast


def _infer(
    detector: torch.nn.Module, device: torch.device, batch: np.ndarray, dtype: str
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of uint8 frames [B,S,S,3] as float32 numpy arrays (identity Jacobians if none)."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=True)
    # NHWC uint8 -> NCHW float view with channels-last strides: no copy of the layout needed.
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
        out = detector(x)
    values = out["value"].float().cpu().numpy()
    jac = out.get("jacobian")
    if jac is None:
        jacobians = np.broadcast_to(np.eye(2, dtype=np.float32), (*values.shape[:2], 2, 2)).copy()
    else:
        jacobians = jac.float().cpu().numpy()
    return values.astype(np.float32, copy=False), jacobians.astype(np.float32, copy=False)


def detect(
    bundle: ModelBundle, frames: np.ndarray, batch_size: int = 16, *, dtype: str = "fp32"
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of square RGB uint8 ``frames`` [N,S,S,3] (any S; resized with cv2.INTER_AREA).

    Returns ``values`` [N,K,2] and ``jacobians`` [N,K,2,2] (identity where the model has none), float32.
    """
    _check_dtype(dtype)
    frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2]:
        raise FommError(f"frames must be square RGB images [N,S,S,3], got shape {list(frames.shape)}")
    if frames.dtype != np.uint8:
        raise FommError(f"frames must be uint8, got {frames.dtype}")
    if batch_size < 1:
        raise FommError(f"batch size must be 1 or more, got {batch_size}")
    size = bundle.image_size
    if dtype == "bf16":
        check_bf16(bundle.device)
    detector, device = fast_detector(bundle.kp_detector), torch.device(bundle.device)
    values, jacobians = [], []
    for i in range(0, len(frames), batch_size):
        chunk = frames[i : i + batch_size]
        if chunk.shape[1] != size:
            chunk = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in chunk])
        v, j = _infer(detector, device, chunk, dtype)
        values.append(v)
        jacobians.append(j)
    if not values:
        k = bundle.num_kp
        return np.zeros((0, k, 2), np.float32), np.zeros((0, k, 2, 2), np.float32)
    return np.concatenate(values), np.concatenate(jacobians)


# ------------------------------------------------------------------------------------- reference frame
def choose_reference_frame(values: np.ndarray) -> int:
    """Index of the most typical (neutral) frame of ``values`` [T,K,2] (see :func:`rank_reference_frames`)."""
    return int(rank_reference_frames(values)[0])


def rank_reference_frames(values: np.ndarray) -> np.ndarray:
    """Indices of the frames of ``values`` [T,K,2], most typical (neutral) first.

    Every frame is aligned to the per-keypoint median shape by a similarity (rotation, scale,
    translation; :func:`ml_core.geometry.fit_similarity_batch`), the median is recomputed from the
    aligned shapes (a few rounds), and the frame with the smallest mean keypoint distance to it wins.
    Head pose is thereby ignored: the choice is about expression.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 3 or v.shape[-1] != 2 or len(v) == 0:
        raise FommError(f"keypoints must be [T,K,2] with T >= 1, got {list(v.shape)}")
    if len(v) == 1:
        return np.zeros(1, np.int64)
    target = np.median(v, axis=0)
    aligned = v
    if v.shape[1] >= 3:
        for _ in range(3):
            scale, rot, trans = fit_similarity_batch(v, target)
            aligned = scale[:, None, None] * np.einsum("tij,tkj->tki", rot, v) + trans[:, None, :]
            target = np.median(aligned, axis=0)
    dist = np.sqrt(((aligned - target) ** 2).sum(axis=-1)).mean(axis=-1)
    return np.argsort(dist, kind="stable")


# -------------------------------------------------------------------------------------------- framing
def _scan_faces(
    video: str | os.PathLike,
    start: int | None,
    end: int | None,
    step: int,
    samples: int,
    detector: Callable[[np.ndarray], tuple[int, int, int, int] | None],
    cancel: Callable[[], bool] | None,
) -> tuple[list[int], list[tuple[int, int, int, int] | None], tuple[int, int]]:
    """Haar detections on about ``samples`` frames spread over the selection: ``(positions, detections, (w, h))``,
    ``positions`` counting the selected frames from 0."""
    first = start or 0
    with VideoReader(video, start=start, end=end, step=step) as probe:
        expected = probe.expected_count()
        size = probe.size
    stride = max(1, math.ceil((expected or samples) / samples))
    if stride >= SEEK_STRIDE and expected is not None:
        # Long selection: seek to the samples instead of decoding every frame in between.
        frames: Iterable[tuple[int, np.ndarray]] = sample_frames(
            video, [first + k * stride * step for k in range(math.ceil(expected / stride))]
        )
    else:
        frames = VideoReader(video, start=start, end=end, step=step * stride)
    positions: list[int] = []
    detections: list[tuple[int, int, int, int] | None] = []

    def search(frames: Iterable[tuple[int, np.ndarray]]) -> None:
        for index, frame in frames:
            if cancel is not None and cancel():
                raise Cancelled("extraction cancelled")
            positions.append((int(index) - first) // step)
            detections.append(detector(frame))

    search(frames)
    if not detections:  # seeking failed everywhere (odd file): read sequentially after all
        search(VideoReader(video, start=start, end=end, step=step * stride))
    return positions, detections, size


def find_face_box(
    video: str | os.PathLike,
    *,
    start: int | None = None,
    end: int | None = None,
    step: int = 1,
    samples: int = FACE_SAMPLES,
    detector: Callable[[np.ndarray], tuple[int, int, int, int] | None] | None = None,
    cancel: Callable[[], bool] | None = None,
    scale: float | None = None,
) -> tuple[CropBox | None, int, int]:
    """One steady face box for the selected frames: ``(box or None, faces found, frames sampled)``.

    About ``samples`` frames spread over the selection are searched with OpenCV's Haar cascade; see
    :func:`ml_core.framing.face_box_from_detections` for how they become one box. Faces found in fewer
    than ``MIN_FACE_FRACTION`` of the samples count as false alarms (box None). ``scale``: the box side over
    the face size (default ``face_box_from_detections``'s; :func:`ml_core.framing.face_scale_for` gives a model's).
    """
    _, detections, (width, height) = _scan_faces(video, start, end, step, samples, detector or FaceDetector(), cancel)
    return _steady_box(detections, width, height, scale), sum(d is not None for d in detections), len(detections)


def _steady_box(
    detections: Sequence[tuple[int, int, int, int] | None], width: int, height: int, scale: float | None
) -> CropBox | None:
    """The steady box of a scan's detections; None when too few frames show a face (false alarms)."""
    if sum(d is not None for d in detections) < MIN_FACE_FRACTION * len(detections):
        return None
    kwargs = {} if scale is None else {"scale": float(scale)}
    return face_box_from_detections(detections, width, height, **kwargs)


class _Framing(NamedTuple):
    """How every sample is cropped: ``box`` (the clip's frame: keypoints are stored in its coordinates), ``mode``
    (``clip.crop_mode``) and, when the crop follows the face, ``boxes`` [T,3] (each sample's own box)."""

    box: CropBox
    mode: str
    boxes: np.ndarray | None = None


def _follow_samples(reader: VideoReader, step: int) -> int:
    """Frames to search for the face when the crop follows it: :data:`FACE_SAMPLES`, or :data:`FOLLOW_RATE` per
    second of the selection if that is more."""
    fps = float(reader.fps or 0.0)
    seconds = (reader.expected_count() or 0) * max(1, step) / fps if fps > 0 else 0.0
    return max(FACE_SAMPLES, math.ceil(seconds * FOLLOW_RATE))


def _find_face(
    scan: Callable[[int], tuple[list[int], list[Any]]],
    reader: VideoReader,
    step: int,
    notes: list[str],
    scale: float | None,
    follow: bool,
) -> _Framing:
    """The automatic framing from ``scan(samples)`` (:func:`_scan_faces`' positions and detections): one steady box
    around the face (and, with ``follow``, each sample's own box that follows it); the full frame when no face is
    found."""
    width, height = reader.size
    positions, detections = scan(_follow_samples(reader, step) if follow else FACE_SAMPLES)
    found, sampled = sum(d is not None for d in detections), len(detections)
    box = _steady_box(detections, width, height, scale)
    if box is None:
        what = f"no face in {sampled}" if found == 0 else f"a face in only {found} of {sampled}"
        notes.append(f"{what} sampled frames: using the full frame (give a crop box X,Y,SIZE to choose the region)")
        return _Framing(full_frame_box(width, height), "full")
    if found < sampled:
        notes.append(f"face found in {found} of {sampled} sampled frames; the others keep the last good box")
    if not follow:
        return _Framing(box, "auto")
    count = max(reader.expected_count() or 0, max(positions) + 1)
    sigma = FOLLOW_SMOOTH_S * float(reader.fps or 0.0) / max(1, step)
    boxes = follow_boxes(positions, detections, count, sigma=sigma)
    return _Framing(box, "follow", boxes)


def _resolve_crop(
    crop: str | Sequence[int],
    video: str | os.PathLike,
    reader: VideoReader,
    start: int | None,
    end: int | None,
    step: int,
    cancel: Callable[[], bool] | None,
    notes: list[str],
    log: Callable[[str], None] | None,
    config: dict | None = None,
) -> _Framing:
    width, height = reader.size
    if isinstance(crop, str) and crop == "full":
        return _Framing(full_frame_box(width, height), "full")
    if isinstance(crop, str) and crop in ("auto", "follow", "steady"):
        if log is not None:
            log("looking for the face")
        follow = follows_face(crop, config)

        def scan(samples: int) -> tuple[list[int], list[Any]]:
            return _scan_faces(video, start, end, step, samples, FaceDetector(), cancel)[:2]

        return _find_face(scan, reader, step, notes, face_scale_for(config), follow)
    return _Framing(user_box(crop, width, height), "box")


def _check_crop(crop: Any) -> None:
    if isinstance(crop, str):
        if crop in CROP_MODES:
            return
        from ml_core.framing import parse_box

        parse_box(crop)
        return
    try:
        ok = len(crop) == 3 and all(isinstance(v, int | np.integer) for v in crop) and crop[2] > 0
    except TypeError:
        ok = False
    if not ok:
        raise FommError(
            f"crop must be 'auto', 'follow', 'steady', 'full' or (x, y, size) in whole pixels, got {crop!r}"
        )


# ------------------------------------------------------------------------------------------- pipeline
_DONE = object()


def _batches(
    reader: VideoReader, framing: _Framing, size: int, batch_size: int, stop: threading.Event, depth: int = 2
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yield (frame indices, uint8 batch [B,S,S,3]) decoded on a background thread, each frame cropped by its
    framing (the steady box, or its own box when the crop follows the face; past the last box, the last one).

    A yielded batch is only valid until the next one is asked for (its buffer is reused).
    """
    boxes = framing.boxes
    q: queue.Queue = queue.Queue(maxsize=depth)

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            # A ring of depth + 2 batch buffers: at most `depth` wait in the queue, one is being read by
            # the consumer, one is being filled. Reusing them keeps the heap from fragmenting.
            ring = [np.empty((batch_size, size, size, 3), dtype=np.uint8) for _ in range(depth + 2)]
            slot = 0
            indices: list[int] = []
            for n, (index, frame) in enumerate(reader):
                if stop.is_set():
                    return
                buf = ring[slot]
                box = framing.box if boxes is None else boxes[min(n, len(boxes) - 1)]
                # BGR frames: crop and shrink first, then convert only the small image
                cv2.cvtColor(crop_square(frame, box, size), cv2.COLOR_BGR2RGB, dst=buf[len(indices)])
                indices.append(index)
                if len(indices) == batch_size:
                    if not put((indices, buf)):
                        return
                    indices, slot = [], (slot + 1) % len(ring)
            if indices and not put((indices, ring[slot][: len(indices)])):
                return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)
        finally:
            reader.close()

    thread = threading.Thread(target=produce, name="fomm-video-reader", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    raise RuntimeError("video reader thread stopped unexpectedly") from None
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class _Trajectories:
    """Keypoints gathered batch by batch into a few large arrays (grown by doubling).

    Keeping thousands of small per-batch arrays alive between large transient allocations fragments
    the C heap until RSS grows with the video's length; one block per quantity does not.
    """

    def __init__(self, num_kp: int, capacity: int) -> None:
        capacity = max(64, capacity)
        self.values = np.empty((capacity, num_kp, 2), np.float32)
        self.jacobians = np.empty((capacity, num_kp, 2, 2), np.float32)
        self.indices = np.empty(capacity, np.int64)
        self.n = 0

    def add(self, indices: Sequence[int], values: np.ndarray, jacobians: np.ndarray) -> None:
        end = self.n + len(indices)
        if end > len(self.indices):
            grow = max(end, 2 * len(self.indices))
            self.values = np.concatenate(
                [self.values[: self.n], np.empty((grow - self.n, *self.values.shape[1:]), np.float32)]
            )
            self.jacobians = np.concatenate(
                [self.jacobians[: self.n], np.empty((grow - self.n, *self.jacobians.shape[1:]), np.float32)]
            )
            self.indices = np.concatenate([self.indices[: self.n], np.empty(grow - self.n, np.int64)])
        self.values[self.n : end] = values
        self.jacobians[self.n : end] = jacobians
        self.indices[self.n : end] = indices
        self.n = end

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.n
        return self.indices[:n].copy(), self.values[:n].copy(), self.jacobians[:n].copy()


def _check_options(
    dtype: str,
    batch_size: Any,
    crop: Any,
    smooth: dict[str, Any] | None,
    reference_frame: Any,
    start: int | None,
    end: int | None,
    step: int,
) -> Any:
    """Refuse bad options before the video is opened; returns the parsed smoothing parameters."""
    _check_dtype(dtype)
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise FommError(f"batch size must be a whole number from 1 to {MAX_BATCH}, got {batch_size!r}")
    _check_crop(crop)
    smoothing = smoothing_params(smooth)
    if not (reference_frame == "auto" or (isinstance(reference_frame, int | np.integer) and reference_frame >= 0)):
        raise FommError(f"reference frame must be 'auto' or a video frame number, got {reference_frame!r}")
    if isinstance(reference_frame, int | np.integer):
        s0 = start or 0
        if reference_frame < s0 or (reference_frame - s0) % step or (end is not None and reference_frame >= end):
            raise FommError(
                f"reference frame {reference_frame} is not among the extracted frames "
                f"(start {s0}, step {step}{'' if end is None else f', end {end}'})"
            )
    return smoothing


def to_clip_frame(values: np.ndarray, boxes: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """Keypoints found in each sample's own crop ``boxes`` [B,3] (``values`` [B,K,2], -1..1 across that crop) in
    the coordinates of the clip's steady ``box``. A square crop moved and scaled uniformly leaves the Jacobians
    (local linear maps in the same coordinates on both sides) as they are."""
    b = np.asarray(boxes, dtype=np.float64)
    x, y, side = (float(v) for v in box)
    corner = (b[:, None, :2] - [x, y]) / side * 2.0 - 1.0
    return (corner + (np.asarray(values, np.float64) + 1.0) * (b[:, None, 2:3] / side)).astype(np.float32)


def _detect_all(
    reader: VideoReader,
    bundle: ModelBundle,
    framing: _Framing,
    batch_size: int,
    dtype: str,
    progress: Progress | None,
    cancel: Callable[[], bool] | None,
) -> tuple[_Trajectories, np.ndarray]:
    """Keypoints of every selected frame, and which frames were blank (a uniform crop: nothing to see)."""
    if dtype == "bf16":
        check_bf16(bundle.device)
    detector, device = fast_detector(bundle.kp_detector), torch.device(bundle.device)
    size = int(bundle.image_size)
    total = reader.expected_count()
    traj = _Trajectories(bundle.num_kp, (total or 0) + batch_size)
    blank: list[np.ndarray] = []
    if progress is not None:
        progress(0, total)
    stop = threading.Event()
    with contextlib.closing(_batches(reader, framing, size, batch_size, stop)) as batches:
        for batch_indices, batch in batches:
            if cancel is not None and cancel():
                raise Cancelled("extraction cancelled")
            blank.append(batch[:, ::4, ::4].reshape(len(batch), -1).std(axis=1) < BLANK_STD)
            values, jacobians = _infer(detector, device, batch, dtype)
            if framing.boxes is not None:
                rows = np.minimum(np.arange(traj.n, traj.n + len(batch)), len(framing.boxes) - 1)
                values = to_clip_frame(values, framing.boxes[rows], framing.box)
            traj.add(batch_indices, values, jacobians)
            if progress is not None:
                done = traj.n
                progress(done, total if total is not None and total >= done else None)
    return traj, np.concatenate(blank) if blank else np.zeros(0, bool)


def _has_face(frame: np.ndarray, box: CropBox, detector: Callable[[np.ndarray], Any]) -> bool:
    found = detector(frame)
    if found is None:
        return False
    fx, fy, fw, fh = found
    cx, cy = fx + fw / 2.0, fy + fh / 2.0
    x, y, side = box
    return x <= cx <= x + side and y <= cy <= y + side


def _pick_reference(
    video: str | os.PathLike,
    vals: np.ndarray,
    frame_indices: np.ndarray,
    times: np.ndarray,
    blank: np.ndarray,
    box: CropBox,
    notes: list[str],
    detector: Any = None,
) -> int:
    """The automatic neutral frame: the most typical one that is not blank and shows the face.

    Frames are ranked by :func:`rank_reference_frames`; blank frames (a uniform crop) are never chosen.
    The best ``REFERENCE_CANDIDATES`` are looked at again (seeking) and the first with a face inside the
    crop wins; if none shows one (the head left the picture for most of the take), up to
    ``4 * REFERENCE_CANDIDATES`` more frames spread over the rest of the ranking are looked at. Where no
    face is seen at all (a face the detector cannot see), the best non-blank frame is used.
    """
    order = [int(i) for i in rank_reference_frames(vals) if not blank[i]]
    if not order:
        notes.append("every frame is blank (a uniform picture): the reference frame is the first one")
        return 0
    if len(order) == 1:
        return order[0]
    rest = order[REFERENCE_CANDIDATES:]
    spread = (
        [
            rest[int(k)]
            for k in np.unique(
                np.linspace(0, len(rest) - 1, min(len(rest), 4 * REFERENCE_CANDIDATES)).round().astype(int)
            )
        ]
        if rest
        else []
    )
    try:
        detector = detector or FaceDetector()
    except FommError:
        return order[0]
    for group in (order[:REFERENCE_CANDIDATES], spread):
        found = _first_with_face(video, group, frame_indices, times, box, detector)
        if found is not None:
            if found != order[0]:
                notes.append(
                    f"reference frame: video frame {int(frame_indices[order[0]])} was more typical "
                    f"but shows no face; frame {int(frame_indices[found])} is used"
                )
            return found
    return order[0]


def _first_with_face(
    video: str | os.PathLike,
    group: list[int],
    frame_indices: np.ndarray,
    times: np.ndarray,
    box: CropBox,
    detector: Any,
) -> int | None:
    """The first of ``group`` (sample indices, best first) whose frame shows a face inside ``box``."""
    if not group:
        return None
    wanted = {int(frame_indices[c]): float(times[c]) for c in group}
    try:
        seen = dict(sample_frames(video, sorted(wanted), times=wanted))
    except FommError:
        return None
    for c in group:
        frame = seen.get(int(frame_indices[c]))
        if frame is not None and _has_face(frame, box, detector):
            return c
    return None


def _smoothed(
    vals: np.ndarray, jacs: np.ndarray, times: np.ndarray, smoothing: Any, has_jac: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """One Euro smoothing over the samples' presentation times (None: raw); returns the record too."""
    if smoothing is None or len(vals) < 2:
        return vals, jacs, None
    vparams, jparams = smoothing
    sv, sj = smooth_motion(vals, jacs, times=times, params=vparams, jacobian_params=jparams)
    record = {**describe(vparams), "jacobians": describe(jparams)}
    return sv.astype(np.float32), (sj.astype(np.float32) if has_jac else jacs), record


def _choose_given_reference(reference_frame: int, frame_indices: np.ndarray) -> int:
    hit = np.flatnonzero(frame_indices == int(reference_frame))
    if len(hit) == 0:
        raise FommError(
            f"reference frame {reference_frame} did not decode (the video's last extracted frame is "
            f"{int(frame_indices[-1])})"
        )
    return int(hit[0])


def _relay(notes: Sequence[str], log: Callable[[str], None] | None) -> None:
    if log is not None:
        for n in notes:
            log(n)


def extract(
    video: str | os.PathLike,
    *,
    model: Any = None,
    checkpoint: str | os.PathLike | None = None,
    config: str | os.PathLike | dict | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    crop: str | Sequence[int] = "auto",
    start: int | None = None,
    end: int | None = None,
    step: int = 1,
    reference_frame: str | int = "auto",
    smooth: dict[str, Any] | None = None,
    dtype: str = "fp32",
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> MotionClip:
    """Keypoint and Jacobian trajectories of a driving video (see the module docstring).

    ``model`` is a loaded :class:`~ml_core.model.ModelBundle` to reuse (its device is used; inference
    runs on :func:`fast_detector`'s copy of its keypoint detector); otherwise
    ``load_model(checkpoint, config, device)``. ``crop``: ``"steady"`` (one steady box around the face, the
    full frame if there is none), ``"follow"`` (each frame cropped around the face where it is, framed like the
    model's training images; keypoints stored in the steady box's coordinates, so head motion is kept), ``"auto"``
    (the model's choice: :func:`ml_core.framing.follow_face_for`), ``"full"`` (the whole frame padded to a
    square) or ``(x, y, size)`` pixels. ``start``/``end`` (exclusive)/``step`` select video frames.
    ``reference_frame``: ``"auto"`` (:func:`_pick_reference`) or a video frame number among those extracted.
    ``smooth``: None (raw) or a dict of One Euro parameters (:func:`ml_core.filters.smoothing_params`;
    ``{}`` = defaults).
    ``dtype``: ``"fp32"`` or ``"bf16"`` (autocast). ``progress(done, total)`` is called per batch
    (``total`` from the header, None if unknown); ``cancel()`` returning True stops with
    :class:`Cancelled`. ``log(line)`` receives stage messages and notes (e.g. a truncated file).
    Each sample keeps the presentation time of its frame (``clip.times``), so a variable-frame-rate
    video keeps its true timing; a rotated (phone) video is read upright.
    """
    smoothing = _check_options(dtype, batch_size, crop, smooth, reference_frame, start, end, step)
    notes: list[str] = []
    with VideoReader(video, start=start, end=end, step=step, bgr=True) as reader:
        if model is None:
            from ml_core.model import load_model

            model = load_model(checkpoint, config, device)
        bundle = model
        framing = _resolve_crop(crop, video, reader, start, end, step, cancel, notes, log, bundle.config)
        box = framing.box
        _relay(notes, log)
        traj, blank = _detect_all(reader, bundle, framing, batch_size, dtype, progress, cancel)
        fps, video_size, times = reader.fps, reader.size, np.asarray(reader.times[: traj.n], np.float64)
        notes.extend(reader.notes)
        _relay(reader.notes, log)

    frame_indices, vals, jacs = traj.arrays()
    has_jac = bool(bundle.estimate_jacobian)
    vals, jacs, smoothing_record = _smoothed(vals, jacs, times, smoothing, has_jac)
    if reference_frame == "auto":
        ref = _pick_reference(video, vals, frame_indices, times, blank, box, notes)
    else:
        ref = _choose_given_reference(int(reference_frame), frame_indices)

    return MotionClip(
        values=vals,
        jacobians=jacs,
        fps=fps,
        frame_indices=frame_indices,
        sample_times=times,
        reference_frame=ref,
        crop_box=tuple(box),
        video_size=video_size,
        num_kp=bundle.num_kp,
        image_size=int(bundle.image_size),
        config_hash=str(bundle.config_hash),
        checkpoint_hash=str(bundle.checkpoint_hash),
        has_jacobians=has_jac,
        source_path=str(Path(video).resolve()),
        crop_mode=framing.mode,
        smoothing=smoothing_record,
        notes=tuple(notes),
    )
