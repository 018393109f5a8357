"""Natural facial performances as numpy curves (no Blender here).

:func:`make_performance` draws, from one seed, the per-frame values of every semantic shape key
(0..1) plus head rotation (yaw, pitch, roll in radians) and translation. Channels are built from
independent random processes so that a linear probe can tell them apart:

- blinks: both eyes (sometimes one), 60-100 ms closing, 0-40 ms closed, 90-150 ms opening,
  at random intervals of 2-6 s;
- jaw: speech-like syllable bumps at 3-5 Hz grouped in phrases separated by pauses;
- smiles, brow raises: eased (smoothstep) transitions between held levels, sometimes one-sided;
- pucker: now and then, eased in and out;
- head: smooth band-limited motion, yaw/pitch/roll up to about 25/15/10 degrees, small translation.
"""

from __future__ import annotations

import numpy as np

#: The semantic shape-key ids every synthetic head has, in this order.
CURVE_IDS: tuple[str, ...] = (
    "jaw_open",
    "smile_L",
    "smile_R",
    "blink_L",
    "blink_R",
    "brow_raise_L",
    "brow_raise_R",
    "pucker",
)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _band_limited(rng: np.random.Generator, t: np.ndarray, fmin: float, fmax: float, n: int = 4) -> np.ndarray:
    """Smooth zero-mean signal of unit peak: a sum of ``n`` sinusoids with random frequency and phase."""
    out = np.zeros_like(t)
    for _ in range(n):
        f = rng.uniform(fmin, fmax)
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    peak = np.abs(out).max()
    return out / peak if peak > 0 else out


def _holds(
    rng: np.random.Generator,
    t: np.ndarray,
    p_active: float,
    level: tuple[float, float],
    hold: tuple[float, float],
    ease: tuple[float, float],
    start_active: bool | None = None,
) -> np.ndarray:
    """Piecewise-constant levels joined by smoothstep eases: holds with ease in/out."""
    duration = float(t[-1]) + 1.0
    times = [-rng.uniform(0.0, hold[1])]
    levels = []
    active = rng.random() < p_active if start_active is None else start_active
    levels.append(rng.uniform(*level) if active else 0.0)
    while times[-1] < duration:
        times.append(times[-1] + rng.uniform(*hold))
        active = rng.random() < p_active
        levels.append(rng.uniform(*level) if active else 0.0)
    out = np.full_like(t, levels[0])
    for k in range(1, len(times)):
        e = rng.uniform(*ease)
        # transition from levels[k-1] to levels[k] starting at times[k]
        w = _smoothstep((t - times[k]) / e)
        out = out + (levels[k] - levels[k - 1]) * w
    return out


def _blinks(
    rng: np.random.Generator, t: np.ndarray, interval: tuple[float, float], p_single: float
) -> tuple[np.ndarray, np.ndarray]:
    left = np.zeros_like(t)
    right = np.zeros_like(t)
    duration = float(t[-1])
    when = rng.uniform(0.2, min(3.0, interval[1]))
    while when < duration + 0.3:
        close = rng.uniform(0.06, 0.10)
        shut = rng.uniform(0.0, 0.04)
        reopen = rng.uniform(0.09, 0.15)
        depth = 1.0 if rng.random() < 0.8 else rng.uniform(0.75, 1.0)
        x = t - when
        shape = np.where(
            x < 0,
            0.0,
            np.where(
                x < close,
                _smoothstep(x / close),
                np.where(x < close + shut, 1.0, 1.0 - _smoothstep((x - close - shut) / reopen)),
            ),
        )
        shape = depth * shape
        if rng.random() < p_single:
            (left if rng.random() < 0.5 else right)[:] += shape
        else:
            asym = rng.uniform(-0.05, 0.05)
            left += np.clip(shape * (1.0 + asym), 0, 1)
            right += np.clip(shape * (1.0 - asym), 0, 1)
        when += rng.uniform(*interval)
    return np.clip(left, 0, 1), np.clip(right, 0, 1)


def _speech(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Jaw opening: syllable bumps at 3-5 Hz in phrases of 0.8-3 s separated by 0.3-1.5 s pauses."""
    out = np.zeros_like(t)
    duration = float(t[-1]) + 1.0
    now = -rng.uniform(0.0, 1.5)
    speaking = rng.random() < 0.7
    while now < duration:
        if speaking:
            end = now + rng.uniform(0.8, 3.0)
            rate = rng.uniform(3.0, 5.0)
            loud = rng.uniform(0.4, 1.0)
            s = now
            while s < end:
                width = rng.uniform(0.7, 1.3) / rate  # one syllable
                amp = loud * rng.uniform(0.25, 0.95)
                x = (t - s) / width
                out = np.maximum(out, amp * np.where((x > 0) & (x < 1), np.sin(np.pi * np.clip(x, 0, 1)) ** 2, 0))
                s += width * rng.uniform(0.8, 1.1)
            now = end
        else:
            now += rng.uniform(0.3, 1.5)
        speaking = not speaking
    # now and then a held wide opening (surprise, yawn)
    if rng.random() < 0.25:
        out = np.maximum(out, _holds(rng, t, 0.3, (0.6, 1.0), (0.6, 1.5), (0.15, 0.4), start_active=False))
    return np.clip(out, 0, 1)


def make_performance(
    seed: int,
    n_frames: int,
    fps: float = 25.0,
    *,
    blink_interval: tuple[float, float] = (2.0, 6.0),
    max_rotation_deg: tuple[float, float, float] = (25.0, 15.0, 10.0),
    max_translation: tuple[float, float, float] = (0.08, 0.05, 0.06),
    expressions: bool = True,
    head_motion: bool = True,
) -> dict:
    """Draw one natural performance.

    Returns a dict with ``curves`` [T,S] float32 in 0..1 (columns in ``curve_ids`` order),
    ``curve_ids`` (list of semantic ids, :data:`CURVE_IDS`), ``head_rotation`` [T,3] float32
    (yaw, pitch, roll, radians; yaw turns the face toward the character's left (+X), pitch tips the
    face up, roll tilts the head toward the character's left shoulder), ``head_translation`` [T,3]
    float32 (x right, y away from the camera, z up, Blender units), ``fps`` and ``seed``.
    """
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    rng = np.random.default_rng([int(seed), 0x5EED])
    t = np.arange(n_frames, dtype=np.float64) / float(fps)
    curves = np.zeros((n_frames, len(CURVE_IDS)), dtype=np.float64)
    if expressions:
        curves[:, 0] = _speech(rng, t)
        # smiles: mostly symmetric, sometimes one-sided
        smile = _holds(rng, t, 0.5, (0.3, 1.0), (0.6, 2.5), (0.25, 0.7))
        if rng.random() < 0.3:
            side = _holds(rng, t, 0.4, (0.3, 0.9), (0.6, 2.0), (0.25, 0.6))
            if rng.random() < 0.5:
                curves[:, 1], curves[:, 2] = np.maximum(smile, side), smile
            else:
                curves[:, 1], curves[:, 2] = smile, np.maximum(smile, side)
        else:
            asym = _band_limited(rng, t, 0.1, 0.4) * 0.1
            curves[:, 1] = smile * (1 + asym)
            curves[:, 2] = smile * (1 - asym)
        curves[:, 3], curves[:, 4] = _blinks(rng, t, blink_interval, p_single=0.25)
        brow = _holds(rng, t, 0.45, (0.3, 1.0), (0.5, 2.0), (0.15, 0.5))
        if rng.random() < 0.3:
            side = _holds(rng, t, 0.45, (0.3, 1.0), (0.5, 2.0), (0.15, 0.5))
            if rng.random() < 0.5:
                curves[:, 5], curves[:, 6] = side, brow * 0.3
            else:
                curves[:, 5], curves[:, 6] = brow * 0.3, side
        else:
            curves[:, 5] = brow
            curves[:, 6] = brow * rng.uniform(0.85, 1.0)
        curves[:, 7] = _holds(rng, t, 0.2, (0.4, 1.0), (0.5, 1.5), (0.2, 0.5))
        # a pucker relaxes the smile (the two pull the mouth corners in opposite ways)
        curves[:, 1:3] *= 1.0 - 0.8 * curves[:, 7:8]
    rotation = np.zeros((n_frames, 3))
    translation = np.zeros((n_frames, 3))
    if head_motion:
        for i in range(3):
            amp = np.radians(max_rotation_deg[i]) * rng.uniform(0.3, 1.0)
            rotation[:, i] = amp * _band_limited(rng, t, 0.08, 0.6)
            translation[:, i] = max_translation[i] * rng.uniform(0.2, 1.0) * _band_limited(rng, t, 0.05, 0.4)
    return {
        "curves": np.clip(curves, 0.0, 1.0).astype(np.float32),
        "curve_ids": list(CURVE_IDS),
        "head_rotation": rotation.astype(np.float32),
        "head_translation": translation.astype(np.float32),
        "fps": float(fps),
        "seed": int(seed),
    }
