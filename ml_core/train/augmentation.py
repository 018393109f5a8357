"""Augmentation of (source, driving) pairs, the authors' ``augmentation_params``: horizontal flip, time flip,
colour jitter; plus ``capture_param`` (ours, off unless the config names it): what a real camera and the automatic
face box do to a frame (:func:`capture_realism`). The same random draw is applied to both frames of a pair (they
must stay one video); only the sensor noise differs from frame to frame, as it does in a real video.

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


def colour_jitter(
    imgs: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
) -> np.ndarray:
    """torchvision-style ColorJitter factors drawn once and applied to every image of ``imgs`` [..., H, W, 3]."""
    out = imgs.astype(np.float32, copy=True)
    ops = []
    if brightness:
        f = rng.uniform(max(0.0, 1 - brightness), 1 + brightness)
        ops.append(lambda x, f=f: x * f)
    if contrast:
        f = rng.uniform(max(0.0, 1 - contrast), 1 + contrast)
        ops.append(
            lambda x, f=f: (
                (x - _rgb_to_gray(x).mean(axis=(-3, -2), keepdims=True)) * f
                + _rgb_to_gray(x).mean(axis=(-3, -2), keepdims=True)
            )
        )
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


def _affine_about_centre(size: int, scale: float, shift: np.ndarray) -> np.ndarray:
    """The 2x3 pixel matrix of ``p -> scale * p + shift`` in normalised coordinates (pixel centres at -1 and +1)."""
    c = (size - 1) / 2.0
    return np.array(
        [[scale, 0.0, c - scale * c + shift[0] * c], [0.0, scale, c - scale * c + shift[1] * c]], np.float64
    )


def capture_realism(
    frames: np.ndarray, landmarks: np.ndarray | None, params: dict, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Real-capture look for a pair ``[2, H, W, 3]`` (float in [0, 1]) and its landmarks ``[2, L, 2]``.

    ``params`` (all optional; a missing or zero entry skips that step), applied in this order:

    - ``box_jitter: {scale: S, shift: T, p: P}``: zoom by a factor in ``[1 - S, 1 + S]`` (or ``S = [MIN, MAX]``;
      below 1 the head gets smaller) and shift by up to ``T``
      (fraction of half the side) about the centre, edges replicated: the automatic face box on real video
      (off-centre, tighter or looser than training); landmarks follow.
    - ``exposure: E``: gain ``2 ** u``, ``u`` in ``[-E, E]``; ``white_balance: W``: per-channel gains in
      ``[1 - W, 1 + W]``.
    - ``blur: {sigma: B, p: P}``: Gaussian blur (defocus, motion) with sigma up to ``B`` pixels.
    - ``low_res: {min: M, p: P}``: shrunk to a factor in ``[M, 1]`` and enlarged back (a small face upscaled).
    - ``noise: N``: Gaussian sensor noise, sigma up to ``N``, drawn per frame.
    - ``jpeg: {quality: [LO, HI], p: P}``: JPEG compression at a quality in that range.

    ``p`` is each step's probability (default 0.5).
    """
    import cv2

    params = params or {}
    n, h, w = frames.shape[:3]
    out = np.asarray(frames, np.float32)

    def chance(cfg: dict) -> bool:
        return rng.random() < float(cfg.get("p", 0.5))

    box = params.get("box_jitter") or {}
    if box and chance(box):
        span = box.get("scale", 0.0)
        lo, hi = (float(span[0]), float(span[1])) if isinstance(span, list | tuple) else (1 - span, 1 + span)
        scale = rng.uniform(lo, hi)
        shift = rng.uniform(-1, 1, 2) * float(box.get("shift", 0.0))
        m = _affine_about_centre(w, scale, shift)
        out = np.stack(
            [cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for f in out]
        )
        if landmarks is not None:
            landmarks = (landmarks * scale + shift).astype(landmarks.dtype)
    gain = np.ones(3, np.float32)
    if params.get("exposure"):
        gain *= np.float32(2.0 ** (rng.uniform(-1, 1) * float(params["exposure"])))
    if params.get("white_balance"):
        gain *= (1.0 + rng.uniform(-1, 1, 3) * float(params["white_balance"])).astype(np.float32)
    if not np.allclose(gain, 1.0):
        out = np.clip(out * gain, 0.0, 1.0)
    blur = params.get("blur") or {}
    if blur and chance(blur):
        sigma = rng.uniform(0.3, max(0.3, float(blur.get("sigma", 1.0))))
        out = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in out])
    low = params.get("low_res") or {}
    if low and chance(low):
        f = rng.uniform(float(low.get("min", 0.5)), 1.0)
        sw, sh = max(4, round(w * f)), max(4, round(h * f))
        out = np.stack(
            [
                cv2.resize(
                    cv2.resize(fr, (sw, sh), interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR
                )
                for fr in out
            ]
        )
    if params.get("noise"):
        sigma = rng.uniform(0.0, float(params["noise"]))
        out = np.clip(out + rng.normal(0.0, sigma, out.shape).astype(np.float32), 0.0, 1.0)
    jpeg = params.get("jpeg") or {}
    if jpeg and chance(jpeg):
        lo, hi = jpeg.get("quality", [30, 90])
        q = int(rng.integers(int(lo), int(hi) + 1))
        frames8 = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
        dec = []
        for f in frames8:
            ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, q])
            dec.append(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else f)
        out = np.stack(dec).astype(np.float32) / 255.0
    return np.ascontiguousarray(out, dtype=np.float32), landmarks


def augment_pair(
    frames: np.ndarray,
    landmarks: np.ndarray | None,
    params: dict,
    rng: np.random.Generator,
    flip_perm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
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
        frames = colour_jitter(
            frames,
            rng,
            float(jitter.get("brightness", 0)),
            float(jitter.get("contrast", 0)),
            float(jitter.get("saturation", 0)),
            float(jitter.get("hue", 0)),
        )
    capture = params.get("capture_param") or {}
    if capture:
        frames, landmarks = capture_realism(frames, landmarks, capture, rng)
    return np.ascontiguousarray(frames), None if landmarks is None else np.ascontiguousarray(landmarks)
