"""Video files for the generator: mp4 (mp4v) through OpenCV, written atomically. Imports cv2 lazily."""

from __future__ import annotations

import os

import numpy as np

from ml_core.errors import FommError
from ml_core.fileio import atomic_path


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # e.g. the Blender 4.5 test venv
        raise FommError("writing mp4 needs OpenCV (opencv-python-headless); run with the project's .venv") from exc
    return cv2


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Write RGB uint8 frames [T,H,W,3] to ``path`` (mp4v); nothing is left behind on failure."""
    cv2 = _cv2()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    h, w = frames.shape[1:3]
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            raise FommError(f"OpenCV cannot write {path}; check the folder is writable")
        try:
            for frame in frames:
                writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        finally:
            writer.release()


def read_video(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video as RGB uint8 [T,H,W,3]."""
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame[:, :, ::-1])
    finally:
        cap.release()
    if not frames:
        raise FommError(f"cannot read any frame from {path}")
    return np.stack(frames)


def count_frames(path: str | os.PathLike) -> int:
    """Frames in a video, by decoding (exact, unlike the container's estimate)."""
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n
