"""Capture-realism augmentation (ml_core.train.augmentation.capture_realism): the landmarks follow the box jitter,
each degradation does what it says, and nothing changes unless the config asks for it."""

from __future__ import annotations

import cv2
import numpy as np

from ml_core.train.augmentation import augment_pair, capture_realism


def dot_pair(size: int = 64, at: tuple[float, float] = (0.3, -0.2)) -> tuple[np.ndarray, np.ndarray]:
    """Two frames with a bright dot at normalised ``at`` (pixel centres at -1/+1), and that landmark."""
    c = (size - 1) / 2.0
    frames = np.zeros((2, size, size, 3), np.float32)
    px = (round(at[0] * c + c), round(at[1] * c + c))
    for f in frames:
        cv2.circle(f, px, 2, (1.0, 1.0, 1.0), -1)
    lms = np.array([[at], [at]], np.float32)
    return frames, lms


def centroid(img: np.ndarray) -> np.ndarray:
    g = img.mean(axis=-1)
    ys, xs = np.mgrid[: g.shape[0], : g.shape[1]]
    c = (g.shape[0] - 1) / 2.0
    return np.array([(xs * g).sum() / g.sum(), (ys * g).sum() / g.sum()]) / c - 1.0


def test_landmarks_follow_the_box_jitter():
    frames, lms = dot_pair()
    moved = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        jitter = {"scale": [0.7, 1.2] if seed % 2 else 0.2, "shift": 0.15, "p": 1.0}
        out, new = capture_realism(frames, lms, {"box_jitter": jitter}, rng)
        assert out.shape == frames.shape and out.dtype == np.float32
        for t in range(2):
            assert np.abs(centroid(out[t]) - new[t, 0]).max() < 0.04  # within ~1 px at 64 px
        assert np.allclose(new[0], new[1])  # one box for the whole video
        moved += np.abs(new - lms).max() > 0.02
    assert moved >= 5  # the jitter does move the frame


def test_degradations_change_the_frames_within_range():
    rng = np.random.default_rng(0)
    frames = rng.random((2, 64, 64, 3)).astype(np.float32)
    frames = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames])  # smooth, like a render
    steps = {
        "blur": {"blur": {"sigma": 1.5, "p": 1.0}},
        "low_res": {"low_res": {"min": 0.3, "p": 1.0}},
        "noise": {"noise": 0.05},
        "jpeg": {"jpeg": {"quality": [10, 20], "p": 1.0}},
        "exposure": {"exposure": 0.5, "white_balance": 0.2},
    }
    for name, params in steps.items():
        out, lm = capture_realism(frames, None, params, np.random.default_rng(3))
        assert lm is None and out.shape == frames.shape, name
        assert out.min() >= 0.0 and out.max() <= 1.0, name
        assert np.abs(out - frames).mean() > 1e-3, name
    # sensor noise differs from frame to frame; the other steps treat both frames alike
    noisy, _ = capture_realism(np.repeat(frames[:1], 2, 0), None, {"noise": 0.05}, np.random.default_rng(1))
    assert np.abs(noisy[0] - noisy[1]).mean() > 1e-3
    blurred, _ = capture_realism(np.repeat(frames[:1], 2, 0), None, steps["blur"], np.random.default_rng(1))
    assert np.array_equal(blurred[0], blurred[1])


def test_no_capture_param_leaves_pairs_as_before():
    frames, lms = dot_pair()
    params = {"flip_param": {"horizontal_flip": True}, "jitter_param": {"brightness": 0.1}}
    a = augment_pair(frames, lms, params, np.random.default_rng(5))
    b = augment_pair(frames, lms, {**params, "capture_param": {}}, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = augment_pair(frames, lms, {**params, "capture_param": {"noise": 0.05}}, np.random.default_rng(5))
    assert not np.array_equal(a[0], c[0])
