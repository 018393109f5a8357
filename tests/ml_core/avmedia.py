"""Test videos written with PyAV: rotated (display matrix), variable frame rate, audio only (no ffmpeg needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np


def write_av_video(
    path: str | os.PathLike,
    frames: Sequence[np.ndarray],
    *,
    times: Sequence[float] | None = None,
    rate: float = 30.0,
    rotation: int | None = None,
) -> os.PathLike | str:
    """Write RGB uint8 frames (even sizes) as mpeg4 .mp4: presentation times in ms, optional display rotation.

    ``rotation``: the display rotation as PyAV reads it back, the same number as the ``rotate`` tag
    ``ffmpeg -metadata:s:v:0 rotate=N`` writes (checked: frames then decode as ffmpeg's autorotation shows them).
    """
    tb = Fraction(1, 1000)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(rate).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = tb
        stream.time_base = tb
        stream.options = {"flags": "+qscale", "global_quality": str(2 * 118)}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            t = times[i] if times is not None else i / rate
            frame.pts, frame.time_base = round(t * 1000), tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_wav(path: str | os.PathLike, seconds: float = 0.5, rate: int = 8000) -> os.PathLike | str:
    """A mono 16-bit WAV of a sine tone (an audio-only file)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        n = int(seconds * rate)
        tone = (np.sin(np.arange(n) * 0.1) * 8000).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def marker_frame(i: int, w: int = 64, h: int = 32) -> np.ndarray:
    """Landscape frame whose top-left quadrant is white (orientation marker) and green level says ``i``."""
    f = np.zeros((h, w, 3), np.uint8)
    f[: h // 2, : w // 4] = 255
    f[h // 2 :, :, 1] = min(255, 20 * i)
    return f
