"""The examples solve (ml_core.examples) without Blender: features, exact leave-one-out, bounds, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from ml_core.errors import FommError
from ml_core.examples import (
    MIN_EXAMPLES,
    example_features,
    loo_residuals,
    peak_frames,
    quaternion_hemisphere,
    solve_examples,
    spread_frames,
    standardise,
    whiten,
)


def _pearson(a, b) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _performance(t_len: int = 300, seed: int = 0):
    """Latent expression curves driving 10 keypoints linearly, under a moving head (similarity per frame)."""
    rng = np.random.default_rng(seed)
    t = np.arange(t_len) / 25.0
    latent = np.stack(
        [
            np.clip(np.sin(2 * np.pi * 0.7 * t), 0, None),  # jaw-like
            (np.sin(2 * np.pi * 0.13 * t + 1) + 1) / 2,  # smile-like
            np.exp(-(((t % 3.0) - 1.5) ** 2) / 0.01),  # blinks
        ],
        axis=1,
    )
    base = rng.uniform(-0.6, 0.6, (10, 2))
    basis = rng.normal(0, 0.05, (3, 10, 2))
    local = base + np.einsum("tl,lkd->tkd", latent, basis)
    angle = 0.15 * np.sin(2 * np.pi * 0.2 * t)
    scale = 1 + 0.05 * np.sin(2 * np.pi * 0.11 * t)
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    shift = 0.05 * np.stack([np.sin(t), np.cos(0.7 * t)], -1)
    values = scale[:, None, None] * np.einsum("tij,tkj->tki", rot, local) + shift[:, None, :]
    values += rng.normal(0, 0.0005, values.shape)
    return values, latent, angle


def _spread_rows(t_len: int, n: int) -> np.ndarray:
    return np.linspace(0, t_len - 1, n).round().astype(int)


def test_loo_closed_form_equals_refitting_without_each_example():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 5))
    y = rng.normal(size=(9, 2))
    for kernel in (x @ x.T, np.exp(-((x[:, None] - x[None]) ** 2).sum(-1) / 8)):
        k = kernel
        col = k.mean(0)
        kc = k - col[None] - col[:, None] + k.mean()
        lam = 0.3
        fast = loo_residuals(kc, y, lam)
        for i in range(len(y)):
            keep = np.delete(np.arange(len(y)), i)
            kk = k[np.ix_(keep, keep)]
            c = kk.mean(0)
            kkc = kk - c[None] - c[:, None] + kk.mean()
            alpha = np.linalg.solve(kkc + lam * np.eye(len(keep)), y[keep] - y[keep].mean(0))
            row = k[i, keep] - k[i, keep].mean() - c + kk.mean()
            pred = y[keep].mean(0) + row @ alpha
            np.testing.assert_allclose(fast[i], y[i] - pred, rtol=1e-8, atol=1e-10)


def test_eight_examples_recover_every_channel_under_head_motion():
    values, latent, _ = _performance()
    blocks = example_features(values, None, 0)
    rows = _spread_rows(len(values), 8)
    # blinks are short: an animator keys two of them among the eight (one alone cannot be predicted by the others)
    rows[2], rows[5] = 30 + np.argmax(latent[30:50, 2]), 180 + np.argmax(latent[180:200, 2])
    res = solve_examples(blocks, rows, latent[rows], ["jaw", "smile", "blink"], lower=[0, 0, 0], upper=[1, 1, 1])
    for c in range(3):
        assert _pearson(res.values[:, c], latent[:, c]) >= 0.95, res.fits[c]
    assert res.values.min() >= 0 and res.values.max() <= 1
    assert all(f.explained for f in res.fits)
    assert "jaw: each example predicted within" in res.fits[0].describe()


def test_a_nonlinear_channel_is_learned_by_the_kernel_form():
    values, latent, _ = _performance()
    blocks = example_features(values, None, 0)
    rows = _spread_rows(len(values), 30)
    target = (latent[:, 0] - 0.5) ** 2
    res = solve_examples(blocks, rows, target[rows, None], ["bowl"])
    assert res.fits[0].model == "rbf"
    assert _pearson(res.values[:, 0], target) > 0.9


def test_head_channels_use_the_head_pose():
    values, _, angle = _performance()
    blocks = example_features(values, None, 0)
    rows = _spread_rows(len(values), 8)
    res = solve_examples(blocks, rows, angle[rows, None], ["head_roll"], head=[True])
    assert "head" in res.fits[0].features
    assert _pearson(res.values[:, 0], angle) > 0.99


def test_head_motion_alone_leaves_no_expression():
    values, _, _ = _performance()
    still = np.repeat(values[:1], len(values), axis=0)
    angle = np.linspace(0, 0.3, len(values))
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    moved = np.einsum("tij,tkj->tki", rot, still)
    blocks = example_features(moved, None, 0)
    assert np.abs(blocks["expression"]).max() < 1e-9
    np.testing.assert_allclose(np.abs(blocks["head"][:, 0]), angle, atol=1e-9)


def test_quaternions_are_normalised_and_signs_do_not_matter():
    values, latent, _ = _performance()
    blocks = example_features(values, None, 0)
    half = 0.4 * latent[:, 0]
    quats = np.stack([np.cos(half), np.sin(half), 0 * half, 0 * half], axis=1)
    rows = _spread_rows(len(values), 8)
    keyed = quats[rows].copy()
    keyed[1::2] *= -1  # the same rotations, half of them keyed with the other sign
    res = solve_examples(blocks, rows, keyed, ["w", "x", "y", "z"], quaternions=[(0, 1, 2, 3)], constant_ok=[True] * 4)
    np.testing.assert_allclose(np.linalg.norm(res.values, axis=1), 1.0, atol=1e-9)
    angle = 2 * np.arctan2(np.abs(res.values[:, 1]), np.abs(res.values[:, 0]))
    assert _pearson(angle, 2 * half) > 0.95
    flipped = quaternion_hemisphere(keyed)
    assert np.all(flipped @ flipped[0] > 0)


def test_a_channel_the_motion_cannot_explain_is_flagged():
    values, latent, _ = _performance()
    blocks = example_features(values, None, 0)
    rows = _spread_rows(len(values), 20)
    for seed in range(5):
        noise = np.random.default_rng(seed).uniform(0, 1, len(rows))
        res = solve_examples(blocks, rows, np.column_stack([latent[rows, 0], noise]), ["jaw", "noise"])
        assert res.fits[0].explained and not res.fits[1].explained
        assert [f.name for f in res.unexplained()] == ["noise"]


@pytest.mark.parametrize(
    ("rows", "targets", "message"),
    [
        ([], np.zeros((0, 1)), "0 example frame"),
        ([3, 40], [[0.1], [0.9]], f"at least {MIN_EXAMPLES}"),
        ([3, 40, 900], [[0.1], [0.9], [0.5]], "outside the clip's 300 samples"),
        ([3, 40, 40], [[0.1], [0.9], [0.5]], "same clip sample"),
        ([3, 40, 80], [[0.3], [0.3], [0.3]], "'jaw' is keyed with the same value 0.3 on every example"),
        ([3, 40, 80], [[0.3], [np.nan], [0.1]], "not a finite number"),
    ],
    ids=["none", "two", "outside", "duplicate", "constant", "nan"],
)
def test_bad_examples_are_refused(rows, targets, message):
    values, _, _ = _performance()
    blocks = example_features(values, None, 0)
    with pytest.raises(FommError, match=message):
        solve_examples(blocks, rows, np.asarray(targets, float), ["jaw"])


def test_spread_frames_start_neutral_and_cover_the_extremes():
    _, latent, _ = _performance()
    frames = spread_frames(latent, 6)
    assert len(frames) == 6 and np.all(np.diff(frames) > 0)
    assert latent[frames].sum(1).min() == latent.sum(1).min()
    for c in range(3):
        assert latent[frames, c].max() > 0.9


def test_linear_and_kernel_forms_can_be_forced():
    values, latent, _ = _performance()
    blocks = example_features(values, None, 0)
    rows = _spread_rows(len(values), 8)
    rows[2], rows[5] = 30 + np.argmax(latent[30:50, 2]), 180 + np.argmax(latent[180:200, 2])
    for kernels in ("linear", "rbf", "auto"):
        res = solve_examples(blocks, rows, latent[rows], ["jaw", "smile", "blink"], kernels=kernels)
        expected = {"rbf"} if kernels == "rbf" else {"linear"}  # auto: linear below RBF_MIN_EXAMPLES examples
        assert {f.model for f in res.fits} == expected


def test_peak_frames_take_the_neutral_frame_and_each_channels_peak():
    _, latent, _ = _performance()
    frames = peak_frames(latent, 6, min_gap=4)
    assert len(frames) == 6 and np.all(np.diff(frames) >= 4)
    assert latent[frames].sum(1).min() == latent.sum(1).min()
    for c in range(3):
        assert latent[frames, c].max() == pytest.approx(latent[:, c].max())
    # two channels that always move together (both brows) peak on one frame: one example shows both
    t = np.arange(20.0)
    brow = np.exp(-((t - 5) ** 2) / 2)
    poses = np.column_stack([brow, brow, 0.5 * np.exp(-((t - 15) ** 2) / 2)])
    assert peak_frames(poses, 3).tolist() == [0, 5, 15]
    assert peak_frames(poses, 3, near_peak=1.5).tolist() == [0, 5, 9]  # never covered: the second brow's own frame


def test_whitening_weighs_small_real_motions_alike_and_damps_jitter():
    rng = np.random.default_rng(3)
    t = np.arange(400)
    jaw, brow = np.sin(t / 7.0), np.sin(t / 23.0 + 1)
    mix = rng.normal(size=(2, 12))
    block = np.outer(jaw, mix[0]) * 3.0 + np.outer(brow, mix[1]) + rng.normal(0, 1e-3, (400, 12))
    block[:, 5] *= 50.0  # one column in other units: standardised first
    plain = np.linalg.svd(standardise(block) - standardise(block).mean(0), compute_uv=False) ** 2
    assert plain[1] / plain[0] < 0.2  # standardised, the brow's direction has a tenth of the jaw's variance
    z = whiten(block)
    var = z.var(axis=0)
    assert np.isclose((z**2).sum(1).mean(), 1.0)
    assert var[1] / var[0] > 0.7  # whitened, it counts nearly as much
    assert var[2:].sum() < 0.01 * var[:2].sum()  # the jitter's directions stay small


def _weak_examples():
    """Four examples of three channels (too few to learn each map from scratch) and a calibration-like prior that
    is right up to its gain, offset and noise."""
    values, latent, _ = _performance()
    blocks = example_features(values, None, 0)
    rows = np.array([0, 37, 120, 233])
    rng = np.random.default_rng(3)
    prior = 0.7 * latent + 0.1 + rng.normal(0, 0.02, latent.shape)
    return blocks, rows, latent, prior


def test_a_good_prior_is_corrected_by_the_examples():
    blocks, rows, latent, prior = _weak_examples()
    names = ["jaw", "smile", "blink"]
    alone = solve_examples(blocks, rows, latent[rows], names, lower=[0] * 3, upper=[1] * 3)
    helped = solve_examples(blocks, rows, latent[rows], names, lower=[0] * 3, upper=[1] * 3, prior=prior)
    assert helped.prior_used and not alone.prior_used
    assert all(f.prior for f in helped.fits) and not any(f.prior for f in alone.fits)
    for c in range(3):
        r_alone, r_helped = _pearson(alone.values[:, c], latent[:, c]), _pearson(helped.values[:, c], latent[:, c])
        # jaw and smile: 0.66 and 0.81 from the four examples alone; the blink is already right (0.998)
        gain = 0.1 if c < 2 else -0.01
        assert r_helped >= 0.95 and r_helped >= r_alone + gain, (names[c], r_alone, r_helped)
    # the examples fix the prior's gain and offset: the prediction sits on the truth, not on the prior
    assert np.abs(helped.values - latent).mean() < 0.5 * np.abs(prior - latent).mean()
    assert helped.values.min() >= 0 and helped.values.max() <= 1


def test_a_prior_that_does_not_predict_the_examples_is_dropped():
    blocks, rows, latent, _ = _weak_examples()
    rows = _spread_rows(len(latent), 8)
    rows[2], rows[5] = 30 + np.argmax(latent[30:50, 2]), 180 + np.argmax(latent[180:200, 2])
    names = ["jaw", "smile", "blink"]
    alone = solve_examples(blocks, rows, latent[rows], names)
    noise = np.random.default_rng(4).uniform(0, 1, latent.shape)
    res = solve_examples(blocks, rows, latent[rows], names, prior=noise)
    assert not res.prior_used
    np.testing.assert_array_equal(res.values, alone.values)


def test_prior_columns_of_nan_leave_their_channels_to_the_examples():
    blocks, rows, latent, prior = _weak_examples()
    names = ["jaw", "smile", "blink"]
    partial = prior.copy()
    partial[:, 1] = np.nan  # no prior for the smile
    alone = solve_examples(blocks, rows, latent[rows], names)
    res = solve_examples(blocks, rows, latent[rows], names, prior=partial)
    assert res.prior_used and [f.prior for f in res.fits] == [True, False, True]
    np.testing.assert_allclose(res.values[:, 1], alone.values[:, 1])
    with pytest.raises(FommError, match="does not match 300 samples x 3 channels"):
        solve_examples(blocks, rows, latent[rows], names, prior=prior[:, :2])
