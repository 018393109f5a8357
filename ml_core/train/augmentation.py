"""Augmentation of (source, driving) pairs, the authors' ``augmentation_params``: horizontal flip, time flip,
colour jitter. The same random draw is applied to both frames of a pair (they must stay one video).

Images are float32 ``[2, H, W, 3]`` numpy arrays in [0, 1]; landmarks ``[2, L, 2]`` in [-1, 1] follow the flip
(x -> -x, and left/right landmark pairs swap so each keypoint keeps its meaning).
"""

from __future__ import annotations

import numpy as np


def flip_permutation(names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Index permutation swapping ``*_L`` / ``*_R`` (and ``*.L`` / ``*.R``) landmark names."""
    names = list(names)
    perm = np.arange(len(names))
    index = {n: i for i, n in enumerate(names)}
    for i, n in enumerate(names):
        for a, b in (("_L", "_R"), ("_R", "_L"), (".L", ".R"), (".R", ".L")):
            if n.endswith(a):
                other = n[: -len(a)] + b
                if other in index:
                    perm[i] = index[other]
                break
    return perm


def _rgb_to_gray(img: np.ndarray) -> np.ndarray:
    return (img @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]


def colour_jitter(imgs: np.ndarray, rng: np.random.Generator, brightness: float = 0.0, contrast: float = 0.0,
                  saturation: float = 0.0, hue: float = 0.0) -> np.ndarray:
    """torchvision-style ColorJitter factors drawn once and applied to every image of ``imgs`` [..., H, W, 3]."""
    out = imgs.astype(np.float32, copy=True)
    ops = []
    if brightness:
        f = rng.uniform(max(0.0, 1 - brightness), 1 + brightness)
        ops.append(lambda x, f=f: x * f)
    if contrast:
        f = rng.uniform(max(0.0, 1 - contrast), 1 + contrast)
        ops.append(lambda x, f=f: (x - _rgb_to_gray(x).mean(axis=(-3, -2), keepdims=True)) * f
                   + _rgb_to_gray(x).mean(axis=(-3, -2), keepdims=True))
    if saturation:
        f = rng.uniform(max(0.0, 1 - saturation), 1 + saturation)
        ops.append(lambda x, f=f: (x - _rgb_to_gray(x)) * f + _rgb_to_gray(x))
    if hue:
        angle = rng.uniform(-hue, hue) * 2 * np.pi  # rotate the chroma plane of YIQ
        c, s = np.cos(angle), np.sin(angle)
        to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
        rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)
        m = (np.linalg.inv(to_yiq) @ rot @ to_yiq).astype(np.float32)
        ops.append(lambda x, m=m: x @ m.T)
    for i in rng.permutation(len(ops)):
        out = np.clip(ops[i](out), 0.0, 1.0)
    return out


def augment_pair(frames: np.ndarray, landmarks: np.ndarray | None, params: dict, rng: np.random.Generator,
                 flip_perm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the config's ``augmentation_params`` to a pair ``[2, H, W, 3]`` (+ landmarks ``[2, L, 2]``)."""
    params = params or {}
    flip = params.get("flip_param") or {}
    if flip.get("horizontal_flip") and rng.random() < 0.5:
        frames = frames[:, :, ::-1]
        if landmarks is not None:
            landmarks = landmarks.copy()
            landmarks[..., 0] = -landmarks[..., 0]
            if flip_perm is not None:
                landmarks = landmarks[:, flip_perm]
    if flip.get("time_flip") and rng.random() < 0.5:
        frames = frames[::-1]
        if landmarks is not None:
            landmarks = landmarks[::-1]
    jitter = params.get("jitter_param") or {}
    if any(jitter.get(k) for k in ("brightness", "contrast", "saturation", "hue")):
        frames = colour_jitter(frames, rng, float(jitter.get("brightness", 0)), float(jitter.get("contrast", 0)),
                               float(jitter.get("saturation", 0)), float(jitter.get("hue", 0)))
    return np.ascontiguousarray(frames), None if landmarks is None else np.ascontiguousarray(landmarks)
