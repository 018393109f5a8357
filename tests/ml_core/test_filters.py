"""ml_core.filters: One Euro behaviour (jitter removed, lag, zero-lag mode, beta), parameter parsing."""

from __future__ import annotations

import numpy as np
import pytest

from ml_core.errors import FommError
from ml_core.filters import OneEuroParams, one_euro, parse_smooth, smooth_motion, smoothing_params

FPS = 30.0


def lag_of(signal: np.ndarray, reference: np.ndarray, max_lag: int = 15) -> int:
    """Shift (frames) that best aligns ``signal`` with ``reference``; positive = signal is late."""
    errs = [
        np.mean((signal[max_lag + k : len(signal) - max_lag + k] - reference[max_lag:-max_lag]) ** 2)
        for k in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmin(errs)) - max_lag


def test_constant_is_unchanged_and_first_sample_kept():
    x = np.full((50, 3), 0.25)
    assert np.allclose(one_euro(x, FPS), 0.25)
    ramp = np.linspace(0, 1, 40)
    assert one_euro(ramp, FPS, zero_lag=False)[0] == 0.0
    assert one_euro(np.array([0.7]), FPS).tolist() == [0.7]


def test_jitter_at_rest_is_removed():
    rng = np.random.default_rng(0)
    x = 0.1 + rng.normal(0, 0.01, (300, 5, 2))
    y = one_euro(x, FPS, vector_axis=-1)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y[30:-30].std() < 0.5 * x.std()  # defaults: responsive, still halves the jitter
    assert abs(y.mean() - 0.1) < 0.002
    calm = one_euro(x, FPS, vector_axis=-1, beta=0.0)
    assert calm[30:-30].std() < 0.3 * x.std()  # two passes of a 1 Hz first-order low-pass at 30 fps


def test_causal_mode_lags_and_zero_lag_does_not():
    t = np.arange(0, 6, 1 / FPS)
    x = 0.3 * np.sin(2 * np.pi * 0.5 * t)
    slow = OneEuroParams(min_cutoff=0.5, beta=0.0)
    causal = one_euro(x, FPS, params=slow, zero_lag=False)
    offline = one_euro(x, FPS, params=slow, zero_lag=True)
    assert lag_of(causal, x) >= 3
    assert lag_of(offline, x) == 0


def test_beta_trades_smoothing_for_speed():
    t = np.arange(0, 3, 1 / FPS)
    step = np.clip((t - 1.0) / 0.1, 0, 1) * 0.3  # a fast 0.3-unit move in 0.1 s
    lazy = one_euro(step, FPS, min_cutoff=0.5, beta=0.0, zero_lag=False)
    quick = one_euro(step, FPS, min_cutoff=0.5, beta=50.0, zero_lag=False)
    after = int(1.2 * FPS)  # 0.1 s after the move ended
    assert abs(quick[after] - 0.3) < 0.5 * abs(lazy[after] - 0.3)


def test_points_share_one_cutoff_so_rotation_commutes():
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(0, 0.02, (120, 3, 2)), axis=0)
    c, s = np.cos(0.7), np.sin(0.7)
    rot = np.array([[c, -s], [s, c]])
    a = one_euro(x @ rot.T, FPS, vector_axis=-1) @ rot
    b = one_euro(x, FPS, vector_axis=-1)
    assert np.allclose(a, b, atol=1e-12)
    per_coord = one_euro(x @ rot.T, FPS) @ rot
    assert not np.allclose(per_coord, b, atol=1e-6)  # elementwise filtering is not isotropic


def test_times_match_fps_and_uneven_times_work():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (40, 2))
    assert np.allclose(one_euro(x, FPS), one_euro(x, times=np.arange(40) / FPS))
    uneven = np.cumsum(rng.uniform(0.02, 0.05, 40))
    assert np.isfinite(one_euro(x, times=uneven)).all()
    with pytest.raises(FommError, match="increasing"):
        one_euro(x, times=np.zeros(40))
    with pytest.raises(FommError, match="one entry per sample"):
        one_euro(x, times=np.arange(3))
    with pytest.raises(FommError, match="frame rate"):
        one_euro(x, 0.0)


def test_smooth_motion_values_and_jacobians():
    rng = np.random.default_rng(4)
    v = rng.normal(0, 0.01, (60, 4, 2)).astype(np.float32)
    j = (np.eye(2) + rng.normal(0, 0.05, (60, 4, 2, 2))).astype(np.float32)
    sv, sj = smooth_motion(v, j, FPS)
    assert sv.shape == v.shape and sj.shape == j.shape and sv.dtype == np.float32
    assert sv.std() < v.std() and np.abs(sj - np.eye(2)).std() < np.abs(j - np.eye(2)).std()
    eye = np.broadcast_to(np.eye(2, dtype=np.float32), j.shape)
    assert np.allclose(smooth_motion(v, eye, FPS)[1], eye)


def test_parameters_are_validated():
    with pytest.raises(FommError, match="min_cutoff"):
        OneEuroParams(min_cutoff=0)
    with pytest.raises(FommError, match="beta"):
        OneEuroParams(beta=-1)
    with pytest.raises(FommError, match="unknown smoothing parameter"):
        smoothing_params({"cutoff": 1})
    assert smoothing_params(None) is None
    vp, jp = smoothing_params({"beta": 3, "jacobians": {"min_cutoff": 0.5}})
    assert vp == OneEuroParams(beta=3) and jp == OneEuroParams(beta=3, min_cutoff=0.5)


def test_parse_smooth():
    assert parse_smooth(None) is None and parse_smooth("off") is None
    assert parse_smooth("") == {} and parse_smooth("default") == {}
    assert parse_smooth("min_cutoff=0.8, beta=5,causal") == {"min_cutoff": 0.8, "beta": 5.0, "zero_lag": False}
    for bad, msg in (("beta=x", "must be a number"), ("gamma=1", "bad --smooth item"), ("beta=-2", "beta")):
        with pytest.raises(FommError, match=msg):
            parse_smooth(bad)
