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
from ml_core.fileio import atomic_path

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MotionClip", "load_clip"]

FORMAT_NAME = "fomm-motion-clip"
FORMAT_VERSION = 1

_ARRAYS = ("values", "jacobians", "frame_indices", "crop_box", "video_size")


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
    when the model estimates none). Sample ``t`` was video frame ``frame_indices[t]``, at time
    ``frame_indices[t] / fps`` seconds; ``fps`` is the video's frame rate. ``reference_frame`` (an index
    into T) is the neutral frame relative motion is measured against. ``crop_box`` (x, y, size) is the
    square the keypoints live in, in pixels of a ``video_size`` (width, height) frame.
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
        self.validate()

    # -- derived ------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def times(self) -> np.ndarray:
        """Seconds of each sample from the start of the video, [T] float64."""
        return self.frame_indices.astype(np.float64) / self.fps

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
        if (fi < 0).any() or (np.diff(fi) <= 0).any():
            raise bad("frame_indices must be non-negative and strictly increasing")
        if not (np.isfinite(self.fps) and 0.0 < self.fps < 1000.0):
            raise bad(f"fps must be a positive frame rate, got {self.fps}")
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
            "crop_box": np.array(self.crop_box, dtype=np.int64),
            "video_size": np.array(self.video_size, dtype=np.int64),
            "meta": np.array(json.dumps(self._meta(), sort_keys=True)),
        }
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return path


def load_clip(path: str | os.PathLike) -> MotionClip:
    """Read and validate a motion clip written by :meth:`MotionClip.save`."""
    path = Path(path)
    name = path.name
    if not path.exists():
        raise FommError(f"motion clip not found: {path}")
    if path.is_dir():
        raise FommError(f"{path} is a folder, not a motion clip file")
    if path.stat().st_size == 0:
        raise FommError(f"motion clip {name} is empty (0 bytes); extract it again")

    def bad(msg: str) -> FommError:
        return FommError(f"{name} is not a valid motion clip: {msg}")

    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise bad(f"unreadable ({exc.strerror or exc})") from None
    if magic != b"PK\x03\x04":
        raise bad("not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if "format_version" not in keys:
                raise bad("no format_version (was it written by ml_core?)")
            version_arr = data["format_version"]
            if version_arr.shape != () or not np.issubdtype(version_arr.dtype, np.integer):
                raise bad("format_version must be an integer")
            version = int(version_arr)
            if version > FORMAT_VERSION:
                raise FommError(
                    f"motion clip {name} has format version {version}, newer than this version of the "
                    f"add-on reads ({FORMAT_VERSION}); update the add-on"
                )
            if version < 1:
                raise bad(f"unknown format version {version}")
            missing = [k for k in (*_ARRAYS, "meta") if k not in keys]
            if missing:
                raise bad(f"missing {', '.join(missing)}")
            arrays = {k: data[k] for k in _ARRAYS}
            meta_arr = data["meta"]
    except FommError:
        raise
    except (zipfile.BadZipFile, EOFError) as exc:
        raise bad(f"damaged or truncated archive ({exc})") from None
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise bad("it holds Python objects (pickles), which are refused") from None
        raise bad(f"unreadable ({exc})") from None
    except OSError as exc:
        raise bad(f"unreadable ({exc})") from None

    for key, kind in (("values", np.float32), ("jacobians", np.float32)):
        if arrays[key].dtype != kind:
            raise bad(f"{key} must be float32, got {arrays[key].dtype}")
    for key in ("frame_indices", "crop_box", "video_size"):
        if not np.issubdtype(arrays[key].dtype, np.integer):
            raise bad(f"{key} must be integers, got {arrays[key].dtype}")
    if arrays["crop_box"].shape != (3,) or arrays["video_size"].shape != (2,):
        raise bad("crop_box must hold 3 integers and video_size 2")
    if meta_arr.shape != () or meta_arr.dtype.kind != "U":
        raise bad("meta must be a JSON string")
    try:
        meta = json.loads(str(meta_arr))
    except json.JSONDecodeError:
        raise bad("meta is not valid JSON") from None
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
    notes = meta.get("notes", [])
    if not isinstance(notes, list):
        raise bad("meta notes must be a list")
    clip = MotionClip.__new__(MotionClip)
    clip.values = arrays["values"]
    clip.jacobians = arrays["jacobians"]
    clip.frame_indices = arrays["frame_indices"].astype(np.int64)
    clip.fps = float(meta["fps"])
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
    clip.smoothing = smoothing
    clip.notes = tuple(str(n) for n in notes)
    clip.ml_core_version = str(meta.get("ml_core_version", "unknown"))
    clip.validate(where=name)
    return clip
