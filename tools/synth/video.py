"""Video files for the generator, through ml_core.video (the project's one video reader and writer):
mp4 written atomically and checked (a full disk never leaves a broken file), read back upright."""

from __future__ import annotations

import os

import numpy as np

from ml_core.errors import FommError


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Write RGB uint8 frames [T,H,W,3] to ``path`` (MPEG-4); nothing is left behind on failure."""
    from ml_core.video import write_video

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    write_video(path, frames, float(fps))


def read_video(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video as RGB uint8 [T,H,W,3]."""
    from ml_core.video import VideoReader

    frames = VideoReader(path).read_all()
    if not frames:
        raise FommError(f"cannot read any frame from {path}")
    return np.stack(frames)


def count_frames(path: str | os.PathLike) -> int:
    """Frames in a video, by decoding (exact, unlike the container's estimate)."""
    from ml_core.video import VideoReader

    reader = VideoReader(path)
    for _ in reader:
        pass
    return int(reader.frames_decoded or 0)
