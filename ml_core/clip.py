"""The motion clip: keypoint and Jacobian trajectories extracted from a driving video (numpy only).

This module never imports torch: Blender loads clips with it. The file format (a versioned ``.npz``,
no pickles) is documented in ``docs/motion-clip-format.md``; :func:`load_clip` refuses anything that
does not match it with a one-line :class:`~ml_core.errors.FommError`.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml_core.errors import FommError
from ml_core.fileio import write_npz

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MotionClip", "load_clip"]

FORMAT_NAME = "fomm-motion-clip"
FORMAT_VERSION = 2  # 2: per-sample presentation times (``times``); version 1 clips are still read

_ARRAYS = ("values", "jacobians", "frame_indices", "crop_box", "video_size")

# Bounds on what a clip file may declare, checked before anything that size is allocated. A real clip:
# 4 hours at 120 fps is 1.73 million samples; 4 hours bounds the resampling to scene frames in Blender.
MAX_DURATION_S = 4 * 3600.0
MAX_SAMPLES = 2_000_000
MAX_KEYPOINTS = 1024
MAX_FPS = 10000.0
MAX_FRAME_INDEX = MAX_DURATION_S * MAX_FPS  # a frame number no 4-hour video reaches
MAX_MEMBER_BYTES = 1 << 30  # one array member (values of 2M samples x 1024 keypoints would be 16 GB)
MAX_META_CHARS = 1 << 20  # the JSON metadata
MAX_COORDINATE = 1e4  # |keypoint| and |Jacobian entry| (crop units are [-1, 1]; real values stay near it)


def _version() -> str:
    try:
        from ml_core import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - only when ml_core's package init is unavailable
        return "unknown"


@dataclass
class MotionClip:
    """Keypoint trajectories of one driving video, as the keypoint detector saw them.

    ``values`` [T,K,2] are keypoints in the crop's normalised coordinates (x right, y down, [-1, 1]);
    ``jacobians`` [T,K,2,2] their local affine parts (identity matrices with ``has_jacobians`` False
    when the model estimates none). Sample ``t`` was video frame ``frame_indices[t]``, presented at
    ``times[t]`` seconds from the video's first frame (``sample_times``; when not given, as in format
    version 1 clips, ``frame_indices[t] / fps``); ``fps`` is the video's measured mean frame rate.
    ``reference_frame`` (an index into T) is the neutral frame relative motion is measured against.
    ``crop_box`` (x, y, size) is the square the keypoints live in, in pixels of a ``video_size`` (width, height) frame.
    """

    values: np.ndarray
    jacobians: np.ndarray
    fps: float
    frame_indices: np.ndarray
    reference_frame: int
    crop_box: tuple[int, int, int]
    video_size: tuple[int, int]
    num_kp: int
    image_size: int
    config_hash: str
    checkpoint_hash: str
    has_jacobians: bool = True
    source_path: str = ""
    crop_mode: str = "box"
    smoothing: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()
    ml_core_version: str = field(default_factory=_version)
    sample_times: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.values = np.ascontiguousarray(self.values, dtype=np.float32)
        self.jacobians = np.ascontiguousarray(self.jacobians, dtype=np.float32)
        self.frame_indices = np.ascontiguousarray(self.frame_indices, dtype=np.int64)
        self.fps = float(self.fps)
        self.reference_frame = int(self.reference_frame)
        self.crop_box = tuple(int(v) for v in self.crop_box)  # type: ignore[assignment]
        self.video_size = tuple(int(v) for v in self.video_size)  # type: ignore[assignment]
        self.num_kp = int(self.num_kp)
        self.image_size = int(self.image_size)
        self.has_jacobians = bool(self.has_jacobians)
        self.notes = tuple(str(n) for n in self.notes)
        if self.sample_times is None:
            self.sample_times = self.frame_indices.astype(np.float64) / self.fps if self.fps > 0 else None
        if self.sample_times is not None:
            self.sample_times = np.ascontiguousarray(self.sample_times, dtype=np.float64)
        self.validate()

    # -- derived ------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def times(self) -> np.ndarray:
        """Presentation time of each sample in seconds from the video's first frame, [T] float64."""
        if self.sample_times is None:
            return self.frame_indices.astype(np.float64) / self.fps
        return self.sample_times

    @property
    def reference_values(self) -> np.ndarray:
        return self.values[self.reference_frame]

    @property
    def reference_jacobians(self) -> np.ndarray:
        return self.jacobians[self.reference_frame]

    def to_pixels(self, values: np.ndarray | None = None) -> np.ndarray:
        """Keypoints (default: all of ``values``) in video-frame pixels, same shape."""
        v = self.values if values is None else np.asarray(values)
        x, y, size = self.crop_box
        return (v + 1.0) * (size / 2.0) + np.array([x, y], dtype=np.float64)

    # -- validation -----------------------------------------------------------------------------------
    def validate(self, where: str = "motion clip") -> None:
        """Raise FommError naming the first thing wrong with this clip."""

        def bad(msg: str) -> FommError:
            return FommError(f"{where}: {msg}; extract the clip again")

        v, j, fi = self.values, self.jacobians, self.frame_indices
        if v.ndim != 3 or v.shape[2] != 2 or v.shape[0] < 1 or v.shape[1] < 1:
            raise bad(f"values must be [T,K,2] with T, K >= 1, got {list(v.shape)}")
        t, k = v.shape[:2]
        if j.shape != (t, k, 2, 2):
            raise bad(f"jacobians must be [{t},{k},2,2] to match values, got {list(j.shape)}")
        if fi.shape != (t,):
            raise bad(f"frame_indices must be [{t}], got {list(fi.shape)}")
        if not np.isfinite(v).all():
            raise bad("values contain NaN or infinity")
        if not np.isfinite(j).all():
            raise bad("jacobians contain NaN or infinity")
        if t > MAX_SAMPLES or k > MAX_KEYPOINTS:
            raise bad(f"{t} samples of {k} keypoints is more than a clip holds ({MAX_SAMPLES}, {MAX_KEYPOINTS})")
        if np.abs(v).max() > MAX_COORDINATE or np.abs(j).max() > MAX_COORDINATE:
            raise bad(f"keypoint or Jacobian values beyond {MAX_COORDINATE:g} (the crop spans -1 to 1)")
        if (fi < 0).any() or (np.diff(fi) <= 0).any():
            raise bad("frame_indices must be non-negative and strictly increasing")
        if fi[-1] > MAX_FRAME_INDEX:
            raise bad(f"frame index {int(fi[-1])} is beyond any {MAX_DURATION_S / 3600:g}-hour video")
        if not (np.isfinite(self.fps) and 0.0 < self.fps <= MAX_FPS):
            raise bad(f"fps must be a positive frame rate up to {MAX_FPS:g}, got {self.fps}")
        self._validate_times(bad)
        if not 0 <= self.reference_frame < t:
            raise bad(f"reference_frame {self.reference_frame} is not an index into {t} frames")
        if len(self.crop_box) != 3 or self.crop_box[2] <= 0:
            raise bad(f"crop_box must be (x, y, size) with size > 0, got {self.crop_box}")
        if len(self.video_size) != 2 or min(self.video_size) <= 0:
            raise bad(f"video_size must be (width, height) > 0, got {self.video_size}")
        if self.num_kp != k:
            raise bad(f"num_kp is {self.num_kp} but values hold {k} keypoints")
        if self.image_size <= 0:
            raise bad(f"image_size must be positive, got {self.image_size}")
        identity = np.broadcast_to(np.eye(2, dtype=np.float32), j.shape)
        if not self.has_jacobians and not np.array_equal(j, identity):
            raise bad("has_jacobians is false but jacobians are not identity matrices")
        det = np.linalg.det(j[self.reference_frame].astype(np.float64))
        if (np.abs(det) < 1e-8).any():
            raise bad("the reference frame's Jacobians are singular (zero area): motion cannot be measured")

    def _validate_times(self, bad: Any) -> None:
        ts = self.times
        if ts.shape != self.frame_indices.shape:
            raise bad(f"times must be [{len(self.frame_indices)}], got {list(ts.shape)}")
        if not np.isfinite(ts).all() or (ts < 0).any() or (np.diff(ts) <= 0).any():
            raise bad("times must be finite, non-negative and strictly increasing")
        if ts[-1] - ts[0] > MAX_DURATION_S:
            raise bad(f"the samples span {ts[-1] - ts[0]:.3g} s, more than {MAX_DURATION_S / 3600:g} hours")

    # -- I/O ----------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "fps": self.fps,
            "reference_frame": self.reference_frame,
            "num_kp": self.num_kp,
            "image_size": self.image_size,
            "has_jacobians": self.has_jacobians,
            "config_hash": str(self.config_hash),
            "checkpoint_hash": str(self.checkpoint_hash),
            "source_path": str(self.source_path),
            "crop_mode": str(self.crop_mode),
            "smoothing": self.smoothing,
            "notes": list(self.notes),
            "ml_core_version": str(self.ml_core_version),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the clip to ``path`` (``.npz``) atomically; returns the path."""
        self.validate()
        path = Path(path)
        arrays = {
            "format_version": np.array(FORMAT_VERSION, dtype=np.int32),
            "values": self.values,
            "jacobians": self.jacobians,
            "frame_indices": self.frame_indices,
            "times": self.times,
            "crop_box": np.array(self.crop_box, dtype=np.int64),
            "video_size": np.array(self.video_size, dtype=np.int64),
            "meta": np.array(json.dumps(self._meta(), sort_keys=True)),
        }
        return write_npz(path, arrays)


def load_clip(path: str | os.PathLike) -> MotionClip:
    """Read and validate a motion clip written by :meth:`MotionClip.save` (format version 1 or 2).

    Every size the file declares is checked against the ``MAX_*`` bounds above before it is read, so a
    tampered file (a zip bomb, an array declaring 10^12 elements, a 2-gigacharacter string) is refused
    with one line instead of exhausting memory.
    """
    path = Path(path)
    name = path.name
    _check_clip_file(path)

    def bad(msg: str) -> FommError:
        return FommError(f"{name} is not a valid motion clip: {msg}")

    version, arrays, meta_text = _read_members(path, bad)
    for key, kind in (("values", np.float32), ("jacobians", np.float32)):
        if arrays[key].dtype != kind:
            raise bad(f"{key} must be float32, got {arrays[key].dtype}")
    for key in ("frame_indices", "crop_box", "video_size"):
        if not np.issubdtype(arrays[key].dtype, np.integer):
            raise bad(f"{key} must be integers, got {arrays[key].dtype}")
    if arrays["crop_box"].shape != (3,) or arrays["video_size"].shape != (2,):
        raise bad("crop_box must hold 3 integers and video_size 2")
    if version >= 2 and arrays["times"].dtype != np.float64:
        raise bad(f"times must be float64, got {arrays['times'].dtype}")
    meta = _parse_meta(meta_text, bad)
    clip = MotionClip.__new__(MotionClip)
    clip.values = arrays["values"]
    clip.jacobians = arrays["jacobians"]
    clip.frame_indices = arrays["frame_indices"].astype(np.int64)
    clip.fps = float(meta["fps"])
    clip.sample_times = arrays["times"] if version >= 2 else None
    clip.reference_frame = int(meta["reference_frame"])
    clip.crop_box = tuple(int(v) for v in arrays["crop_box"])  # type: ignore[assignment]
    clip.video_size = tuple(int(v) for v in arrays["video_size"])  # type: ignore[assignment]
    clip.num_kp = int(meta["num_kp"])
    clip.image_size = int(meta["image_size"])
    clip.config_hash = meta["config_hash"]
    clip.checkpoint_hash = meta["checkpoint_hash"]
    clip.has_jacobians = bool(meta["has_jacobians"])
    clip.source_path = str(meta.get("source_path", ""))
    clip.crop_mode = str(meta.get("crop_mode", "box"))
    clip.smoothing = meta.get("smoothing")
    clip.notes = tuple(str(n) for n in meta.get("notes", []))
    clip.ml_core_version = str(meta.get("ml_core_version", "unknown"))
    clip.validate(where=name)
    return clip


def _check_clip_file(path: Path) -> None:
    if not path.exists():
        raise FommError(f"motion clip not found: {path}")
    if path.is_dir():
        raise FommError(f"{path} is a folder, not a motion clip file")
    if path.stat().st_size == 0:
        raise FommError(f"motion clip {path.name} is empty (0 bytes); extract it again")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise FommError(f"{path.name} is not a valid motion clip: unreadable ({exc.strerror or exc})") from None
    if magic != b"PK\x03\x04":
        raise FommError(f"{path.name} is not a valid motion clip: not an .npz archive")


_KINDS = "fiub"  # numeric member dtypes; "U" only for meta


def _read_member(zf: zipfile.ZipFile, key: str, bad: Any) -> np.ndarray:
    """One ``.npy`` member, its declared size checked before it is allocated."""
    info = zf.getinfo(f"{key}.npy")
    if info.file_size > MAX_MEMBER_BYTES + 4096:
        raise bad(f"{key} declares {info.file_size} bytes, more than a clip holds")
    with zf.open(info) as f:
        try:
            major, _minor = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = header(f)
        except (ValueError, TypeError, OverflowError, MemoryError, SyntaxError) as exc:
            raise bad(f"{key} is not a NumPy array ({' '.join(str(exc).split())[:200]})") from None
    if dtype.hasobject:
        raise bad("it holds Python objects (pickles), which are refused")
    if dtype.kind not in (_KINDS + "U" if key == "meta" else _KINDS):
        raise bad(f"{key} has an unsupported data type {dtype}")
    count = int(np.prod(shape, dtype=object)) if shape else 1
    limit = MAX_META_CHARS * 4 if key == "meta" else MAX_MEMBER_BYTES
    size = count * dtype.itemsize  # itemsize wraps negative for a forged <U2000000000
    if dtype.itemsize <= 0 or size > limit or size > info.file_size:
        raise bad(f"{key} declares shape {list(shape)} of {dtype}: larger than a clip holds or than the file")
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _read_members(path: Path, bad: Any) -> tuple[int, dict[str, np.ndarray], str]:
    """``(format version, arrays, meta JSON text)`` from the archive, every member bounded."""
    try:
        with zipfile.ZipFile(path) as zf:
            keys = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
            if "format_version" not in keys:
                raise bad("no format_version (was it written by ml_core?)")
            version_arr = _read_member(zf, "format_version", bad)
            if version_arr.shape != () or not np.issubdtype(version_arr.dtype, np.integer):
                raise bad("format_version must be an integer")
            version = int(version_arr)
            if version > FORMAT_VERSION:
                raise FommError(
                    f"motion clip {path.name} has format version {version}, newer than this version of the "
                    f"add-on reads ({FORMAT_VERSION}); update the add-on"
                )
            if version < 1:
                raise bad(f"unknown format version {version}")
            wanted = (*_ARRAYS, "times") if version >= 2 else _ARRAYS
            missing = [k for k in (*wanted, "meta") if k not in keys]
            if missing:
                raise bad(f"missing {', '.join(missing)}")
            arrays = {k: _read_member(zf, k, bad) for k in wanted}
            meta_arr = _read_member(zf, "meta", bad)
    except FommError:
        raise
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise bad(f"damaged or truncated archive ({exc})") from None
    except (ValueError, OSError, RuntimeError, NotImplementedError) as exc:
        if "pickle" in str(exc).lower():
            raise bad("it holds Python objects (pickles), which are refused") from None
        raise bad(f"unreadable ({exc})") from None
    if meta_arr.shape != () or meta_arr.dtype.kind != "U":
        raise bad("meta must be a JSON string")
    return version, arrays, str(meta_arr)


def _parse_meta(text: str, bad: Any) -> dict[str, Any]:
    if len(text) > MAX_META_CHARS:
        raise bad(f"meta is {len(text)} characters long, more than {MAX_META_CHARS}")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError:
        raise bad("meta is not valid JSON") from None
    except RecursionError:
        raise bad("meta is nested too deeply") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise bad(f"meta does not name the format {FORMAT_NAME!r}")
    required = {
        "fps": (int, float),
        "reference_frame": (int,),
        "num_kp": (int,),
        "image_size": (int,),
        "has_jacobians": (bool,),
        "config_hash": (str,),
        "checkpoint_hash": (str,),
    }
    for key, types in required.items():
        if key not in meta:
            raise bad(f"meta lacks {key}")
        val = meta[key]
        if not isinstance(val, types) or (bool not in types and isinstance(val, bool)):
            raise bad(f"meta {key} has the wrong type ({type(val).__name__})")
    smoothing = meta.get("smoothing")
    if smoothing is not None and not isinstance(smoothing, dict):
        raise bad("meta smoothing must be an object or null")
    if not isinstance(meta.get("notes", []), list):
        raise bad("meta notes must be a list")
    return meta
