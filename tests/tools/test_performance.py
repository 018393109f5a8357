"""make_performance: numpy only (runs in every venv)."""

import numpy as np
import pytest

from tools.synth.performance import CURVE_IDS, make_performance


def test_shapes_ranges_and_determinism():
    p = make_performance(7, 120, 25)
    assert p["curves"].shape == (120, len(CURVE_IDS)) and p["curves"].dtype == np.float32
    assert p["curve_ids"] == list(CURVE_IDS)
    assert p["head_rotation"].shape == (120, 3) and p["head_translation"].shape == (120, 3)
    assert p["curves"].min() >= 0.0 and p["curves"].max() <= 1.0
    q = make_performance(7, 120, 25)
    np.testing.assert_array_equal(p["curves"], q["curves"])
    assert not np.array_equal(p["curves"], make_performance(8, 120, 25)["curves"])


def test_rotation_limits_and_smoothness():
    p = make_performance(3, 500, 25)
    deg = np.degrees(np.abs(p["head_rotation"])).max(axis=0)
    assert np.all(deg <= np.array([25, 15, 10]) + 1e-3)
    assert deg[0] > 3  # it does move
    # smooth: frame-to-frame change well below the range
    assert np.degrees(np.abs(np.diff(p["head_rotation"], axis=0))).max() < 3.0


def _events(x, thr=0.5):
    above = x > thr
    starts = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    ends = np.flatnonzero(~above[1:] & above[:-1]) + 1
    return starts, ends


def test_blinks_are_short_and_spaced():
    fps = 25
    p = make_performance(11, 25 * 60, fps)
    left, right = p["curves"][:, 3], p["curves"][:, 4]
    both = np.maximum(left, right)
    starts, ends = _events(both)
    assert 8 <= len(starts) <= 35  # one every 2-6 s over a minute
    ends = ends[ends > starts[0]]
    n = min(len(starts), len(ends))
    durations = (ends[:n] - starts[:n]) / fps
    assert durations.max() <= 0.3  # eyes shut (above half) for a fraction of a second
    assert np.mean(np.isclose(left, right, atol=0.1)) < 1.0  # winks exist somewhere across seeds
    # most blinks reach (almost) full closure
    assert both.max() > 0.95


def test_winks_occur():
    single = 0
    for seed in range(20):
        c = make_performance(seed, 25 * 30, 25)["curves"]
        single += int(np.any((c[:, 3] > 0.7) & (c[:, 4] < 0.1)) or np.any((c[:, 4] > 0.7) & (c[:, 3] < 0.1)))
    assert single >= 3


def test_jaw_is_speech_like():
    fps = 25
    jaw = make_performance(5, 25 * 40, fps)["curves"][:, 0].astype(np.float64)
    spec = np.abs(np.fft.rfft(jaw - jaw.mean())) ** 2
    freqs = np.fft.rfftfreq(len(jaw), 1 / fps)
    band = spec[(freqs >= 2.5) & (freqs <= 6)].sum()
    high = spec[freqs > 8].sum()
    assert band > 5 * high  # syllable rhythm, not noise
    assert np.mean(jaw < 0.05) > 0.15  # pauses between phrases


def test_channels_are_separable():
    # over many clips no channel is a linear function of the others
    rows = []
    for seed in range(30):
        p = make_performance(seed, 100, 25)
        rows.append(np.concatenate([p["curves"], p["head_rotation"]], axis=1))
    x = np.concatenate(rows).astype(np.float64)
    x = x - x.mean(axis=0)
    for j in range(x.shape[1]):
        others = np.delete(x, j, axis=1)
        coef, *_ = np.linalg.lstsq(others, x[:, j], rcond=None)
        r2 = 1 - np.sum((x[:, j] - others @ coef) ** 2) / np.sum(x[:, j] ** 2)
        assert r2 < 0.9, (j, r2)


def test_bad_frames():
    with pytest.raises(ValueError):
        make_performance(0, 0)
