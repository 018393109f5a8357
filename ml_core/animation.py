"""Neural preview: a still image animated by a motion clip through the paper's full generator path.

:func:`animate` frames the source image to a square (like extraction: padded, never stretched), runs the keypoint
detector on it once, encodes it once, downsamples it once for the dense motion network, and then renders the clip
in batches: relative (or absolute) keypoint motion -> dense motion + occlusion -> generator decoder. Frames are
written as they are produced (a PNG sequence named the way Blender's image sequences expect, and/or a video, and
optionally a side-by-side ``driving | preview`` review video), so memory does not grow with the clip's length; all
outputs are written atomically (nothing is left behind on an error or Ctrl-C).

Speed, with results unchanged in fp32 (to ~1e-7): the generator runs from a private copy whose eval-mode batch
norms are folded into the neighbouring convolutions, with in-place ReLUs, in channels-last layout; the
visualisation-only warped source image is never computed. ``dtype="bf16"`` runs the per-frame networks under
bfloat16 autocast.

Clip/model compatibility: a clip whose keypoint count differs from the model's (or that lacks Jacobians the model
uses) is refused. A clip made with a different configuration or checkpoint file (hashes differ) only warns, because
the same weights in another file (e.g. converted to safetensors) hash differently; ``strict=True`` refuses it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import re
import time
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ml_core.clip import MotionClip, load_clip
from ml_core.errors import Cancelled, FommError
from ml_core.extraction import check_bf16
from ml_core.fileio import atomic_path
from ml_core.framing import FaceDetector, crop_square, face_box_from_detections, full_frame_box, user_box
from ml_core.geometry import movement_scale
from ml_core.jobs import DTYPES, MODES
from ml_core.motion import first_values, relative_motion
from ml_core.video import VideoReader, VideoWriter, read_image, to_rgb

if TYPE_CHECKING:
    from ml_core.model import ModelBundle

__all__ = [
    "MODES",
    "PNG_PREFIX",
    "animate",
    "check_compatible",
    "frame_source",
    "inference_generator",
    "iter_animation",
    "iter_animation_batches",
    "output_fps",
    "png_name",
]

Progress = Callable[[int, int | None], None]
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi")
PNG_PREFIX = "preview_"
MAX_BATCH = 512  # frames rendered at once (memory grows with it; more gains no speed)
_PNG_RE = re.compile(rf"^{PNG_PREFIX}\d+\.png$")


# ------------------------------------------------------------------------------------------------ inputs
def frame_source(
    image: str | os.PathLike | np.ndarray,
    size: int,
    crop: str | Sequence[int] = "full",
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """The source image (path or HxWx3 RGB uint8 array, any size) framed to a ``size`` square, uint8 RGB.

    ``crop``: ``"full"`` (the whole image centred in a square, padded black like extraction pads video frames),
    ``"auto"`` (a square around the face found by OpenCV's detector, the full image if none) or ``(x, y, size)`` /
    ``"X,Y,SIZE"`` pixels. Never stretched.
    """
    if isinstance(image, str | os.PathLike):
        img = read_image(image)
    else:
        arr = np.asarray(image)
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise FommError(f"source image must be an HxWx3 RGB array, got shape {list(arr.shape)}")
        img = to_rgb(arr, bgr=False)
    h, w = img.shape[:2]
    if isinstance(crop, str) and crop == "full":
        box = full_frame_box(w, h)
    elif isinstance(crop, str) and crop == "auto":
        face = FaceDetector()(img)
        found = face_box_from_detections([face], w, h)
        if found is None and log is not None:
            log("no face found in the source image: using the whole image")
        box = found or full_frame_box(w, h)
    else:
        box = user_box(crop, w, h)
    return crop_square(img, box, size)


def _source_tensor(
    source: Any, size: int, crop: str | Sequence[int], log: Callable[[str], None] | None
) -> torch.Tensor:
    """[1,3,S,S] float32 in [0,1]: a float tensor/array [1,3,S,S] or [3,S,S] as is; else an image to frame."""
    if isinstance(source, torch.Tensor) or (
        isinstance(source, np.ndarray) and source.dtype.kind == "f" and source.ndim in (3, 4) and source.shape[-3] == 3
    ):
        t = torch.as_tensor(source).detach().to("cpu", torch.float32)
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[:2] != (1, 3) or tuple(t.shape[2:]) != (size, size):
            raise FommError(f"a float source must be [1,3,{size},{size}] (the model's input), got {list(t.shape)}")
        return t.contiguous()
    framed = frame_source(source, size, crop, log)
    return torch.from_numpy(framed).permute(2, 0, 1)[None].float().div_(255.0).contiguous()


def _resolve_clip(
    clip_or_video: Any, bundle: ModelBundle, extract_options: dict | None, cancel: Callable[[], bool] | None
) -> tuple[MotionClip, str | None]:
    """(clip, path of its driving video or None). A video is extracted first with ``bundle``."""
    if isinstance(clip_or_video, MotionClip):
        clip_or_video.validate()
        return clip_or_video, clip_or_video.source_path or None
    if not isinstance(clip_or_video, str | os.PathLike):
        raise FommError(
            f"driving motion must be a MotionClip, a clip .npz or a video path, got {type(clip_or_video).__name__}"
        )
    path = Path(clip_or_video)
    if not path.exists():
        raise FommError(f"motion clip or video not found: {path}")
    if path.suffix.lower() == ".npz":
        clip = load_clip(path)
        return clip, clip.source_path or None
    from ml_core.extraction import extract

    opts = dict(extract_options or {})
    opts.setdefault("cancel", cancel)
    return extract(path, model=bundle, **opts), str(path)


def check_compatible(clip: MotionClip, bundle: ModelBundle, strict: bool = False) -> list[str]:
    """Refuse a clip the model cannot be driven by; return warnings (raised instead when ``strict``)."""
    if clip.num_frames == 0:
        raise FommError("the motion clip has no frames: extract it again")
    if clip.num_kp != bundle.num_kp:
        raise FommError(
            f"the motion clip has {clip.num_kp} keypoints but the model has {bundle.num_kp}: animate "
            "with the model that extracted the clip, or extract the clip again with this model"
        )
    if bundle.estimate_jacobian and not clip.has_jacobians:
        raise FommError(
            "the motion clip has no Jacobians but the model uses them: it was extracted with another "
            "kind of model; extract it again with this model"
        )
    notes = []
    if str(clip.config_hash) != str(bundle.config_hash):
        notes.append(
            f"the motion clip was extracted with another model configuration (config {clip.config_hash}, "
            f"this model {bundle.config_hash}): its keypoints may mean other things to this model"
        )
    elif str(clip.checkpoint_hash) != str(bundle.checkpoint_hash):
        notes.append(
            f"the motion clip was extracted with another checkpoint file ({clip.checkpoint_hash}, this "
            f"model {bundle.checkpoint_hash}): fine for the same weights in another format, otherwise "
            "extract the clip again with this model"
        )
    if strict and notes:
        raise FommError(notes[0])
    return notes


def constant_rate(clip: MotionClip) -> tuple[MotionClip, np.ndarray | None]:
    """A variable-frame-rate clip resampled to its mean rate, one sample per output frame, each at its time.

    Returns ``(clip, shown)``: ``shown`` [M] is the video frame on screen at each output frame (for the review
    panel), or None with the clip unchanged when its samples are evenly spaced (within a quarter gap).
    """
    t = clip.times
    if clip.num_frames < 3:
        return clip, None
    gaps = np.diff(t)
    if gaps.max() - gaps.min() <= 0.25 * float(np.median(gaps)) + 1e-4:
        return clip, None
    from ml_core.retarget import resample

    rate = (len(t) - 1) / float(t[-1] - t[0])
    k = clip.num_kp
    packed = np.concatenate([clip.values.reshape(len(t), -1), clip.jacobians.reshape(len(t), -1)], axis=1)
    frames, vals = resample(t - t[0], packed, rate, 0)
    m = len(frames)
    uniform = t[0] + np.arange(m) / rate
    shown = clip.frame_indices[np.clip(np.searchsorted(t, uniform + 1e-9, side="right") - 1, 0, len(t) - 1)]
    identity = np.broadcast_to(np.eye(2, dtype=np.float32), (m, k, 2, 2))
    out = copy.copy(clip)
    out.values = vals[:, : 2 * k].reshape(m, k, 2).astype(np.float32)
    out.jacobians = vals[:, 2 * k :].reshape(m, k, 2, 2).astype(np.float32) if clip.has_jacobians else identity.copy()
    out.frame_indices = np.arange(m, dtype=np.int64)
    out.sample_times = uniform
    out.fps = rate
    out.reference_frame = int(min(m - 1, round((t[clip.reference_frame] - t[0]) * rate)))
    out.notes = (*clip.notes, f"variable frame rate: resampled to {rate:.3f} fps, each sample at its own time")
    out.validate()
    return out, shown


def output_fps(clip: MotionClip) -> float:
    """Playback rate that keeps the clip's real timing: the video's rate over the (median) frame step."""
    if clip.num_frames < 2:
        return clip.fps
    step = float(np.median(np.diff(clip.frame_indices)))
    return clip.fps / max(step, 1.0)


# --------------------------------------------------------------------------------------------- networks
def _same_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:  # conv (BN folded in), ReLU in place
    return F.relu_(self.conv(x))


def _down_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.relu_(self.conv(x)), kernel_size=(2, 2))


def _up_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.relu_(self.conv(F.interpolate(x, scale_factor=2.0)))


def _res_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:  # conv1 holds norm2
    return self.conv2(F.relu_(self.conv1(F.relu_(self.norm1(x))))).add_(x)


def inference_generator(bundle: ModelBundle) -> nn.Module:
    """A private copy of the bundle's generator for inference (the bundle is left untouched).

    Every eval-mode batch norm that follows a convolution is folded into it (conv-BN-ReLU blocks, and the second
    norm of each pre-activation residual block into its first convolution), and the blocks of the copy apply
    their ReLUs and residual sums in place: the same function with fewer passes over memory. The copy is in
    channels-last layout, which the CPU convolution kernels run much faster. Only for inference (no autograd).

    The copy is kept in ``bundle.extra`` for the next call, and rebuilt when the bundle's generator is replaced or
    any of its tensors changes (their version counters move on every in-place update, e.g. an optimiser step).
    """
    source = bundle.generator
    cache = getattr(bundle, "extra", None)
    try:
        key = (source, tuple(t._version for t in (*source.parameters(), *source.buffers())))
    except RuntimeError:  # inference tensors (a model built under torch.inference_mode) have no versions
        cache = None
    if isinstance(cache, dict):
        hit = cache.get("_animation_generator")
        if hit is not None and hit[0][0] is key[0] and hit[0][1] == key[1]:
            return hit[1]
        cache.pop("_animation_generator", None)  # free the old copy before making a new one
    gen = _fold(source)
    if isinstance(cache, dict):
        cache["_animation_generator"] = (key, gen)
    return gen


def _fold(generator: nn.Module) -> nn.Module:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from ml_core.modules.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d

    gen = copy.deepcopy(generator).eval()
    forwards = {SameBlock2d: _same_forward, DownBlock2d: _down_forward, UpBlock2d: _up_forward}
    with torch.no_grad():
        for module in gen.modules():
            kind = type(module)
            if kind in forwards and isinstance(module.norm, nn.BatchNorm2d):
                module.conv = fuse_conv_bn_eval(module.conv, module.norm)
                module.norm = nn.Identity()
                module.forward = types.MethodType(forwards[kind], module)
            elif kind is ResBlock2d and isinstance(module.norm2, nn.BatchNorm2d):
                module.conv1 = fuse_conv_bn_eval(module.conv1, module.norm2)
                module.norm2 = nn.Identity()
                module.forward = types.MethodType(_res_forward, module)
    for p in gen.parameters():
        p.requires_grad_(False)
    return gen.to(memory_format=torch.channels_last)


def _check_options(mode: str, dtype: str, batch_size: Any) -> None:
    if mode not in MODES:
        raise FommError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if dtype not in DTYPES:
        raise FommError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise FommError(f"batch size must be a whole number of 1 or more, got {batch_size!r}")
    if batch_size > MAX_BATCH:
        raise FommError(
            f"batch size {batch_size} is more than {MAX_BATCH} frames: the generator would need "
            "tens of gigabytes; give a smaller --batch"
        )


def iter_animation_batches(
    bundle: ModelBundle,
    source: Any,
    clip: MotionClip,
    *,
    mode: str = "relative",
    adapt_movement_scale: bool = True,
    batch_size: int = 8,
    dtype: str = "fp32",
    crop: str | Sequence[int] = "full",
    cancel: Callable[[], bool] | None = None,
    generator: nn.Module | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[np.ndarray]:
    """Render ``clip`` onto ``source``: yields float32 frames in [0,1], [B,S,S,3] per batch of clip samples.

    ``source``: an image path or HxWx3 uint8 array (framed with ``crop``, see :func:`frame_source`), or a float
    tensor [1,3,S,S] already at the model's input size. ``mode="relative"`` moves the source's keypoints by the
    clip's motion relative to its reference frame (the paper's transfer; with ``adapt_movement_scale`` the motion
    is scaled by the ratio of the keypoint hulls' sizes); ``"absolute"`` uses the clip's keypoints as they are.
    ``generator``: a prepared :func:`inference_generator` to reuse. ``cancel()`` returning True stops with
    :class:`~ml_core.extraction.Cancelled`.
    """
    _check_options(mode, dtype, batch_size)
    if clip.num_kp != bundle.num_kp:
        check_compatible(clip, bundle)  # raises the one-line error
    device = torch.device(bundle.device)
    if dtype == "bf16":
        check_bf16(device)
    size = int(bundle.image_size)
    gen = generator if generator is not None else inference_generator(bundle)
    src = _source_tensor(source, size, crop, log).to(device)
    use_jac = bool(bundle.estimate_jacobian)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

    with torch.inference_mode():
        # Everything constant over the clip, once, in float32.
        kp_src = {k: v.float() for k, v in bundle.kp_detector(src).items() if k == "value" or use_jac}
        src_cl = src.contiguous(memory_format=torch.channels_last)
        features = gen.encode(src_cl)
        dense = gen.dense_motion_network
        small = dense.downsample(src_cl) if dense is not None else None
        values = torch.from_numpy(np.ascontiguousarray(clip.values)).to(device)
        jacobians = torch.from_numpy(np.ascontiguousarray(clip.jacobians)).to(device) if use_jac else None
        ref = int(clip.reference_frame)
        kp_init = {"value": values[ref : ref + 1]}
        if jacobians is not None:
            kp_init["jacobian"] = jacobians[ref : ref + 1]
        scale = movement_scale(first_values(kp_src), first_values(kp_init)) if adapt_movement_scale else 1.0

    total = clip.num_frames
    for start in range(0, total, int(batch_size)):
        if cancel is not None and cancel():
            raise Cancelled("animation cancelled")
        stop = min(start + int(batch_size), total)
        n = stop - start
        with torch.inference_mode():
            kp_drv = {"value": values[start:stop]}
            if jacobians is not None:
                kp_drv["jacobian"] = jacobians[start:stop]
            if mode == "relative":
                kp_drv = relative_motion(kp_src, kp_drv, kp_init, scale=scale)
            kp_s = {k: v.expand(n, *v.shape[1:]) for k, v in kp_src.items()}
            with autocast:
                out = gen(
                    src_cl.expand(n, -1, -1, -1),
                    kp_driving=kp_drv,
                    kp_source=kp_s,
                    source_features=features.expand(n, -1, -1, -1),
                    source_small=None if small is None else small.expand(n, -1, -1, -1),
                    with_deformed=False,
                )
            frames = out["prediction"].float().permute(0, 2, 3, 1).cpu().numpy()
        yield np.ascontiguousarray(frames)


def iter_animation(bundle: ModelBundle, source: Any, clip: MotionClip, **kwargs: Any) -> Iterator[np.ndarray]:
    """Like :func:`iter_animation_batches`, one float32 [S,S,3] frame at a time."""
    for batch in iter_animation_batches(bundle, source, clip, **kwargs):
        yield from batch


# ---------------------------------------------------------------------------------------------- outputs
def png_name(index: int, digits: int = 4) -> str:
    """File name of preview frame ``index`` (1-based), e.g. ``preview_0001.png``: Blender's image-sequence form."""
    return f"{PNG_PREFIX}{index:0{digits}d}.png"


@dataclass
class _Target:
    path: Path
    kind: str  # "video" or "frames"


def _writable_parent(path: Path) -> None:
    parent = path.parent
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise FommError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise FommError(f"cannot write {path}: permission denied in {parent}")


def _plan_outputs(output: Any, review: Any) -> list[_Target]:
    if output is None:
        outputs: list = []
    elif isinstance(output, str | os.PathLike):
        outputs = [output]
    else:
        outputs = list(output)
    targets = []
    for out in outputs:
        text = os.fspath(out)
        path = Path(text)
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            if path.is_dir():
                raise FommError(f"output {path} is a folder: give a video file name or drop the extension")
            targets.append(_Target(path, "video"))
        elif suffix == "" or text.endswith(("/", os.sep)) or path.is_dir():
            if path.exists() and not path.is_dir():
                raise FommError(f"output {path} is a file: give a folder for the PNG frames")
            if path.is_dir():
                foreign = [p.name for p in path.iterdir() if not _PNG_RE.match(p.name)]
                if foreign:
                    raise FommError(
                        f"output folder {path} already holds other files ({foreign[0]}, ...): choose a "
                        f"new or empty folder (only an earlier preview's {PNG_PREFIX}*.png are replaced)"
                    )
            targets.append(_Target(path, "frames"))
        else:
            raise FommError(
                f"cannot write the preview to {path.name}: give a folder (PNG frames) or a "
                f"{'/'.join(VIDEO_SUFFIXES)} video"
            )
    if review is not None:
        path = Path(os.fspath(review))
        if path.suffix.lower() not in VIDEO_SUFFIXES or path.is_dir():
            raise FommError(f"the review must be a video file ({'/'.join(VIDEO_SUFFIXES)}), got {path.name}")
        targets.append(_Target(path, "review"))
    if not targets:
        raise FommError("nothing to write: give an output folder or video (or a review video)")
    resolved = [t.path.resolve() for t in targets]
    if len(set(resolved)) != len(resolved):
        raise FommError("the same output path is given twice: give each output its own path")
    for t in targets:
        _writable_parent(t.path)
    return targets


def _own_frames(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but an earlier preview's frames (so replacing it loses nothing)."""
    return all(_PNG_RE.match(p.name) and p.is_file() for p in folder.iterdir())


class _PngSequence:
    """Writes numbered PNG frames into a folder that appears whole on success (atomic)."""

    def __init__(self, stack: contextlib.ExitStack, path: Path, digits: int) -> None:
        self.dir = stack.enter_context(atomic_path(path, suffix="", replace_folder=_own_frames))
        self.dir.mkdir()
        self.digits = digits
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        import cv2

        self.count += 1
        ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise FommError(f"could not encode preview frame {self.count} as PNG")
        try:
            data.tofile(self.dir / png_name(self.count, self.digits))
        except OSError as exc:
            raise FommError(f"could not write preview frame {self.count}: {exc.strerror or exc}") from None


class _DrivingPanel:
    """The review's left panel: the clip's driving video crop (streamed in step), keypoints drawn on it.

    Falls back to the keypoints on grey when the driving video is not available or does not match the clip.
    """

    def __init__(
        self,
        clip: MotionClip,
        video: str | None,
        size: int,
        log: Callable[[str], None],
        shown: np.ndarray | None = None,
    ) -> None:
        self.clip, self.size = clip, size
        self.frames: Iterator[tuple[int, np.ndarray]] | None = None
        self.reader: VideoReader | None = None
        self.shown = clip.frame_indices if shown is None else shown  # the video frame behind each output frame
        self._last: tuple[int, np.ndarray] | None = None
        fi = np.unique(self.shown)
        if video and Path(video).is_file():
            try:
                step = int(np.gcd.reduce(np.diff(fi))) if len(fi) > 1 else 1
                reader = VideoReader(video, start=int(fi[0]), end=int(fi[-1]) + 1, step=max(step, 1))
            except FommError as exc:
                log(f"review: driving video unusable ({exc}); showing keypoints only")
            else:
                if tuple(reader.size) == tuple(clip.video_size):
                    self.reader = reader
                    self.frames = iter(reader)
                else:
                    reader.close()
                    log(
                        f"review: {Path(video).name} is {reader.size[0]}x{reader.size[1]} but the clip was made from "
                        f"a {clip.video_size[0]}x{clip.video_size[1]} video; showing keypoints only"
                    )
        elif video:
            log(f"review: driving video {video} not found; showing keypoints only")
        else:
            log("review: the clip names no driving video; showing keypoints only")

    def frame(self, t: int) -> np.ndarray:
        import cv2

        panel = None
        want = int(self.shown[t])
        if self._last is not None and self._last[0] == want:  # a frame shown twice (a resampled clip)
            panel = self._last[1].copy()
        while panel is None and self.frames is not None:
            try:
                index, frame = next(self.frames)
            except StopIteration:
                self.close()
                break
            if index == want:
                panel = crop_square(frame, self.clip.crop_box, self.size)
                self._last = (want, panel.copy())
                break
            if index > want:  # cannot happen with a consistent clip; never wait on a frame that is gone
                self.close()
                break
        if panel is None:
            panel = np.full((self.size, self.size, 3), 48, dtype=np.uint8)
        radius = max(1, self.size // 96)
        for x, y in (self.clip.values[t] + 1.0) * (0.5 * (self.size - 1)):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(panel, (round(x), round(y)), radius, (255, 64, 64), -1, lineType=cv2.LINE_AA)
        return panel

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.reader = None
        self.frames = None


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _open_sinks(
    stack: contextlib.ExitStack,
    targets: list[_Target],
    digits: int,
    rate: float,
    make_panel: Callable[[], _DrivingPanel],
) -> tuple[list[Any], VideoWriter | None, _DrivingPanel | None]:
    """Open every output on ``stack``: the frame sinks (PNG folders, videos), the review video and its driving
    panel (``make_panel()``, made only when a review is asked for)."""
    sinks: list[Any] = []
    review_writer = None
    panel = None
    for target in targets:
        if target.kind == "frames":
            sinks.append(_PngSequence(stack, target.path, digits))
        else:
            writer = stack.enter_context(VideoWriter(target.path, rate))
            if target.kind == "video":
                sinks.append(writer)
            else:
                review_writer = writer
                panel = make_panel()
                stack.callback(panel.close)
    return sinks, review_writer, panel


def _write_batches(
    batches: Iterator[np.ndarray],
    sinks: list[Any],
    review_writer: VideoWriter | None,
    panel: _DrivingPanel | None,
    progress: Progress | None,
    total: int,
) -> int:
    """Write each generated frame to every sink (and beside its driving frame to the review); the frames written."""
    written = 0
    if progress is not None:
        progress(0, total)
    for batch in batches:
        for frame in _to_uint8(batch):
            for sink in sinks:
                sink.write(frame)
            if review_writer is not None and panel is not None:
                review_writer.write(np.concatenate([panel.frame(written), frame], axis=1))
            written += 1
        if progress is not None:
            progress(written, total)
    return written


def _summary(
    written: int, rate: float, size: int, targets: Sequence[Any], review: str | os.PathLike | None, t0: float
) -> dict[str, Any]:
    """What :func:`animate` returns."""
    outputs = [str(t.path) for t in targets if t.kind != "review"]
    return {
        "frames": written,
        "fps": rate,
        "width": size,
        "height": size,
        "output": ";".join(outputs),
        "review": "" if review is None else str(review),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _sayer(log: Callable[[str], None] | None) -> Callable[[str], None]:
    """``log`` if given, else a Python warning pointing at the caller of :func:`animate`."""

    def say(line: str) -> None:
        if log is not None:
            log(line)
        else:
            warnings.warn(line, stacklevel=3)

    return say


def animate(
    source_image: str | os.PathLike | np.ndarray,
    clip_or_video: MotionClip | str | os.PathLike,
    output: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    model: ModelBundle | None = None,
    checkpoint: str | os.PathLike | None = None,
    config: str | os.PathLike | dict | None = None,
    mode: str = "relative",
    adapt_movement_scale: bool = True,
    device: str = "cpu",
    batch_size: int = 8,
    dtype: str = "fp32",
    review: str | os.PathLike | None = None,
    fps: float | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    crop: str | Sequence[int] = "full",
    strict: bool = False,
    extract_options: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Animate ``source_image`` with a motion clip and write the preview; returns what was written.

    ``clip_or_video``: a :class:`MotionClip`, a clip ``.npz``, or a driving video (extracted first with the same
    model; ``extract_options`` go to :func:`ml_core.extraction.extract`, e.g. ``crop``, ``progress``).
    ``output``: a folder (``preview_0001.png`` ... , Blender's image-sequence naming; an existing folder may only
    hold an earlier preview, which is replaced) and/or a ``.mp4``/``.mov``/``.avi`` video (several paths allowed).
    ``review``: a side-by-side ``driving | preview`` video. ``fps``: the videos' rate (default: the clip's, over its
    frame step, see :func:`output_fps`). ``model``: a loaded :class:`~ml_core.model.ModelBundle` (else
    ``load_model(checkpoint, config, device)``). ``crop``: how the source is framed (:func:`frame_source`).
    ``mode``, ``adapt_movement_scale``, ``batch_size``, ``dtype``: see :func:`iter_animation_batches`.
    ``progress(done, total)`` per batch; ``cancel()`` -> stop, nothing written. ``log(line)`` gets warnings (a clip
    from another configuration or checkpoint; ``strict=True`` refuses those) and notes; without it they are
    issued as Python warnings. Returns ``{"frames", "fps", "width", "height", "output", "review", "seconds"}``.
    """
    t0 = time.perf_counter()
    _check_options(mode, dtype, batch_size)
    if fps is not None and not (isinstance(fps, int | float) and math.isfinite(fps) and 0 < fps < 1000):
        raise FommError(f"fps must be a positive frame rate, got {fps!r}")
    targets = _plan_outputs(output, review)

    say = _sayer(log)
    image = read_image(source_image) if isinstance(source_image, str | os.PathLike) else source_image
    if model is None:  # after the image: a bad image fails before the model loads
        from ml_core.model import load_model

        model = load_model(checkpoint, config, device)
    bundle = model
    size = int(bundle.image_size)
    framed = frame_source(image, size, crop, say)
    clip, video = _resolve_clip(clip_or_video, bundle, extract_options, cancel)
    clip, shown = constant_rate(clip)  # a phone's variable rate: each sample at its own time
    for note in check_compatible(clip, bundle, strict):
        say(note)
    rate = float(fps) if fps is not None else output_fps(clip)
    total = clip.num_frames
    digits = max(4, len(str(total)))
    generator = inference_generator(bundle)

    with contextlib.ExitStack() as stack:
        sinks, review_writer, panel = _open_sinks(
            stack, targets, digits, rate, lambda: _DrivingPanel(clip, video, size, say, shown)
        )
        batches = iter_animation_batches(
            bundle,
            framed,
            clip,
            mode=mode,
            adapt_movement_scale=adapt_movement_scale,
            batch_size=int(batch_size),
            dtype=dtype,
            cancel=cancel,
            generator=generator,
        )
        written = _write_batches(batches, sinks, review_writer, panel, progress, total)
    return _summary(written, rate, size, targets, review, t0)
