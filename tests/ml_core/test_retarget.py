"""ml_core.retarget: head-motion removal, calibration solve, resampling, reduction, polar decomposition."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from ml_core.errors import FommError
from ml_core.retarget import (
    CALIBRATION_VERSION,
    Calibration,
    find_neutral,
    manual_weights,
    movement_scale,
    neutral_cost,
    polar_decompose,
    rdp_keep,
    remove_head_motion,
    resample,
    rotation_angle,
    solve_bounded,
    solve_weights,
)


def _rot(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _face(k: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, (k, 2))


def _apply_head(values, angle, scale, shift):
    """values [T,K,2] about the origin -> rotated, scaled, shifted per frame."""
    return scale[:, None, None] * np.einsum("tij,tkj->tki", _rot(angle), values) + shift[:, None, :]


def test_module_is_numpy_only():
    code = "import sys, ml_core.retarget; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_remove_head_motion_recovers_pure_similarity():
    rng = np.random.default_rng(1)
    base = _face()
    t = 20
    angle = rng.uniform(-0.4, 0.4, t)
    angle[3] = 0.0
    scale = rng.uniform(0.8, 1.3, t)
    scale[3] = 1.0
    shift = rng.uniform(-0.2, 0.2, (t, 2))
    shift[3] = 0.0
    vals = _apply_head(np.repeat(base[None], t, 0), angle, scale, shift)
    jac0 = rng.normal(size=(base.shape[0], 2, 2)) + 2 * np.eye(2)
    jacs = scale[:, None, None, None] * np.einsum("tij,kjl->tkil", _rot(angle), jac0)
    aligned, aligned_jac, head = remove_head_motion(vals, jacs, reference=3)
    np.testing.assert_allclose(aligned, np.repeat(base[None], t, 0), atol=1e-9)
    np.testing.assert_allclose(aligned_jac, np.repeat(jac0[None], t, 0), atol=1e-9)
    np.testing.assert_allclose(head.angle, angle, atol=1e-9)
    np.testing.assert_allclose(head.scale, scale, atol=1e-9)
    expected_shift = vals.mean(axis=1) - vals[3].mean(axis=0)
    np.testing.assert_allclose(head.translation, expected_shift, atol=1e-12)


def test_remove_head_motion_keeps_expression():
    base = _face(12)
    t = 8
    expr = np.zeros((t, 12, 2))
    expr[:, 0, 1] = np.linspace(0, 0.1, t)  # one keypoint (the "jaw") moves down
    angle = np.linspace(0, 0.3, t)
    vals = _apply_head(base + expr, angle, np.ones(t), np.zeros((t, 2)))
    aligned, _, head = remove_head_motion(vals, None, 0)
    moved = np.linalg.norm(aligned - aligned[0], axis=-1)
    assert moved[-1, 0] > 0.07  # the jaw keeps most of its motion
    assert np.median(moved[-1, 1:]) < 0.02  # the rest stays put
    assert abs(head.angle[-1] - 0.3) < 0.05


def test_remove_head_motion_bad_reference():
    with pytest.raises(FommError, match="reference frame"):
        remove_head_motion(np.zeros((3, 4, 2)), None, 5)


def test_movement_scale():
    face = _face()
    assert movement_scale(face * 2, face) == pytest.approx(2.0)
    assert movement_scale(face, face * 4) == pytest.approx(0.25)
    assert movement_scale(face, np.zeros((5, 2))) == 1.0


def test_polar_decompose():
    rng = np.random.default_rng(2)
    jac = rng.normal(size=(50, 3, 2, 2))
    rot, stretch = polar_decompose(jac)
    np.testing.assert_allclose(rot @ stretch, jac, atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-10)
    eye = np.broadcast_to(np.eye(2), rot.shape)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), eye, atol=1e-10)
    np.testing.assert_allclose(stretch, np.swapaxes(stretch, -1, -2), atol=1e-10)
    # a pure rotation by 0.3 scaled by (2, 0.5) along its own axes
    j = _rot(np.array(0.3)) @ np.diag([2.0, 0.5])
    r, s = polar_decompose(j)
    assert rotation_angle(r) == pytest.approx(0.3)
    np.testing.assert_allclose(s, np.diag([2.0, 0.5]), atol=1e-12)


def _linear_world(n_keys=5, k=10, t=60, seed=3, jac=True, size=0.02):
    """A character whose keypoints move linearly with the keys, and a clip driven by known weights."""
    rng = np.random.default_rng(seed)
    neutral = _face(k, seed)
    disp = rng.normal(scale=size, size=(n_keys, k, 2))
    j0 = np.repeat((np.eye(2) * 0.8)[None], k, 0)
    jd = rng.normal(scale=0.1, size=(n_keys, k, 2, 2))
    calib = Calibration(
        key_names=[f"key{i}" for i in range(n_keys)],
        neutral_values=neutral,
        key_values=neutral + disp,
        neutral_jacobians=j0 if jac else None,
        key_jacobians=(j0 + jd) if jac else None,
    )
    w = np.clip(rng.uniform(-0.5, 1.3, (t, n_keys)), 0, 1)
    w[0] = 0.0  # the reference frame is neutral
    values = neutral + np.einsum("tn,nkc->tkc", w, disp)
    jacs = j0 + np.einsum("tn,nkij->tkij", w, jd)
    return calib, w, values, jacs


def test_solve_weights_recovers_linear_model_under_head_motion():
    calib, w, values, jacs = _linear_world()
    t = len(values)
    angle = np.linspace(0, 0.5, t)
    scale = np.linspace(1.0, 0.7, t)
    shift = np.linspace([0, 0], [0.2, -0.1], t)
    # the whole clip seen at half the calibration's size (a smaller face in the video)
    hv = _apply_head(values * 0.5, angle, scale, shift)
    hj = scale[:, None, None, None] * np.einsum("tij,tkjl->tkil", _rot(angle), jacs)
    res = solve_weights(calib, hv, hj, reference=0, regularization=1e-8, jacobian_weight=0.1)
    assert res.weights.shape == w.shape
    assert res.weights.min() >= 0 and res.weights.max() <= 1
    # head removal is a non-linear fit (the aligned sum of keys is not the sum of aligned keys): close
    assert np.abs(res.weights - w).max() < 0.05
    assert np.corrcoef(res.weights.ravel(), w.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(res.head.angle, angle, atol=0.05)
    # the same clip without head motion gives the same weights: head motion is fully removed
    still = solve_weights(calib, values, jacs, 0, regularization=1e-8, jacobian_weight=0.1)
    np.testing.assert_allclose(res.weights, still.weights, atol=1e-9)


@pytest.mark.parametrize("jac", [False, True])
def test_solve_weights_exact_without_head_removal(jac):
    calib, w, values, jacs = _linear_world(jac=jac, size=0.05)
    res = solve_weights(
        calib, values, jacs if jac else None, 0, regularization=1e-10, remove_head=False, adapt_scale=False
    )
    np.testing.assert_allclose(res.weights, w, atol=1e-5)
    np.testing.assert_allclose(res.residual, 0.0, atol=1e-5)


def test_solve_weights_subset_and_errors():
    calib, w, values, jacs = _linear_world()
    res = solve_weights(calib, values, jacs, 0, keys=["key1", "key3"])
    assert res.weights.shape == (len(values), 2) and res.key_names == ["key1", "key3"]
    with pytest.raises(FommError, match="not in the calibration"):
        solve_weights(calib, values, jacs, 0, keys=["nope"])
    with pytest.raises(FommError, match="keypoints but the calibration has"):
        solve_weights(calib, values[:, :7], jacs[:, :7], 0)
    with pytest.raises(FommError, match="no shape keys"):
        solve_weights(calib, values, jacs, 0, keys=[])


def test_solve_weights_smoothing_stays_bounded():
    calib, _, values, jacs = _linear_world(t=80)
    res = solve_weights(calib, values, jacs, 0, smooth_sigma=2.0)
    rough = solve_weights(calib, values, jacs, 0)
    assert res.weights.min() >= 0 and res.weights.max() <= 1
    assert np.abs(np.diff(res.weights, axis=0)).mean() < np.abs(np.diff(rough.weights, axis=0)).mean()


def test_solve_bounded_matches_scipy_per_frame():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(30, 6))
    b = rng.normal(size=(40, 30)) * 2
    lam_rel = 0.05
    got = solve_bounded(a, b, lam_rel)
    lam = lam_rel * (a**2).sum() / 6 + 1e-12
    a_aug = np.vstack([a, np.sqrt(lam) * np.eye(6)])
    for t in range(len(b)):
        ref = lsq_linear(a_aug, np.concatenate([b[t], np.zeros(6)]), bounds=(0, 1), method="bvls").x
        np.testing.assert_allclose(got[t], ref, atol=1e-6)


def test_solve_bounded_progress_and_cancel():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(10, 3))
    b = rng.normal(size=(20, 10)) * 5
    seen = []
    solve_bounded(a, b, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1]
    with pytest.raises(KeyboardInterrupt):
        solve_bounded(a, b, cancel=lambda: True)


def test_calibration_roundtrip_and_inspection(tmp_path):
    calib, *_ = _linear_world()
    calib.meta = {"object": "Head", "checkpoint_hash": "abc"}
    path = tmp_path / "c.npz"
    calib.save(path)
    back = Calibration.load(path)
    assert back.key_names == calib.key_names and back.meta == calib.meta
    np.testing.assert_array_equal(back.key_values, calib.key_values)
    np.testing.assert_array_equal(back.key_jacobians, calib.key_jacobians)
    resp = back.response()
    assert set(resp) == set(calib.key_names) and len(resp["key0"]) == 10
    keys = np.stack([calib.neutral_values, calib.key_values[0]])
    still = Calibration(["a", "b"], calib.neutral_values, keys)
    assert still.weak_keys() == ["a"]


def test_calibration_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(FommError, match="not a calibration file"):
        Calibration.load(bad)
    with pytest.raises(FommError, match="not found"):
        Calibration.load(tmp_path / "missing.npz")
    other = tmp_path / "other.npz"
    np.savez(other, header=np.array('{"format": "x", "version": 1}'))
    with pytest.raises(FommError, match=f"version-{CALIBRATION_VERSION} calibration"):
        Calibration.load(other)
    with pytest.raises(FommError, match="shapes do not match"):
        Calibration(["a"], np.zeros((5, 2)), np.zeros((2, 5, 2)))


def test_manual_weights():
    t = 10
    vals = np.repeat(_face(6)[None], t, 0)
    vals[:, 2, 1] += np.linspace(0, 0.2, t)
    w = manual_weights(vals, 0, [(2, 1, 10.0), (2, 0, 10.0)], remove_head=False)
    np.testing.assert_allclose(w[:, 0], np.clip(np.linspace(0, 2.0, t), 0, 1))
    np.testing.assert_allclose(w[:, 1], 0.0)
    with pytest.raises(FommError, match="does not exist"):
        manual_weights(vals, 0, [(9, 0, 1.0)])


def test_resample():
    times = np.arange(0, 31) / 30.0  # one second at 30 fps
    vals = np.stack([times * 3.0, -times], 1)
    frames, out = resample(times, vals, 30.0, start_frame=1)
    np.testing.assert_array_equal(frames, np.arange(1, 32))
    np.testing.assert_allclose(out, vals)
    frames, out = resample(times, vals, 24.0, start_frame=10)
    np.testing.assert_array_equal(frames, np.arange(10, 35))
    np.testing.assert_allclose(out[:, 0], np.arange(25) / 24 * 3.0, atol=1e-12)
    # a clip taken with a frame step keeps its real timing
    times = np.arange(0, 61, 2) / 60.0
    frames, out = resample(times, times[:, None], 25.0)
    assert len(frames) == 26
    np.testing.assert_allclose(out[:, 0], np.arange(26) / 25)
    with pytest.raises(FommError):
        resample(np.array([0.0, 0.0]), np.zeros((2, 1)), 24)


def test_rdp_bound_and_counts():
    rng = np.random.default_rng(6)
    frames = np.arange(500)
    walk = np.cumsum(rng.normal(scale=0.02, size=(500, 3)), axis=0)
    walk[:, 2] = 0.5  # a flat curve
    keep = rdp_keep(frames, walk, 0.01)
    assert keep.shape == walk.shape and keep.sum() < walk.size / 2
    assert keep[:, 2].sum() == 2
    for c in range(3):
        idx = np.flatnonzero(keep[:, c])
        assert idx[0] == 0 and idx[-1] == 499
        approx = np.interp(frames, frames[idx], walk[idx, c])
        assert np.abs(approx - walk[:, c]).max() <= 0.01 + 1e-12
    assert rdp_keep(frames, walk, 0.0).all()


def _rdp_recursive(x, y, tol):
    """The textbook recursive algorithm, as the reference."""
    keep = {0, len(x) - 1}

    def rec(i, j):
        if j - i < 2:
            return
        line = y[i] + (y[j] - y[i]) * (x[i + 1 : j] - x[i]) / (x[j] - x[i])
        err = np.abs(y[i + 1 : j] - line)
        m = int(np.argmax(err))
        if err[m] > tol:
            keep.add(i + 1 + m)
            rec(i, i + 1 + m)
            rec(i + 1 + m, j)

    rec(0, len(x) - 1)
    return np.array(sorted(keep))


def test_rdp_matches_recursive_reference():
    rng = np.random.default_rng(7)
    x = np.arange(300, dtype=float)
    ys = np.cumsum(rng.normal(scale=0.03, size=(300, 4)), axis=0)
    mask = rdp_keep(x, ys, 0.02)
    for c in range(4):
        np.testing.assert_array_equal(np.flatnonzero(mask[:, c]), _rdp_recursive(x, ys[:, c], 0.02))
        np.testing.assert_array_equal(np.flatnonzero(rdp_keep(x, ys[:, c], 0.02)), _rdp_recursive(x, ys[:, c], 0.02))


def test_auto_neutral_recovers_from_an_expressive_reference():
    calib, w, values, jacs = _linear_world(size=0.05)
    ref = int(np.argmax(w.sum(axis=1)))  # the most expressive frame as the clip's reference
    plain = solve_weights(calib, values, jacs, ref, regularization=1e-9, remove_head=False, auto_neutral=False)
    auto = solve_weights(calib, values, jacs, ref, regularization=1e-9, remove_head=False)
    assert w[auto.reference].sum() == 0.0  # a truly neutral sample was found
    np.testing.assert_allclose(auto.weights, w, atol=1e-5)
    assert np.abs(plain.weights - w).max() > 0.5


def _pucker_hold_world(seed: int = 5):
    """A clip of another character than the calibrated one: speech (jaw), a smile, rest, a jaw-open + pucker
    hold, rest again. The hold's mouth is narrower than the calibrated pucker, so it reads as strongly negative
    smiles (cross-talk). Keys: jaw, smile_L, smile_R, pucker. Returns the calibration, what the keypoints show in
    key units [T,4] (negative smiles included), the clip's keypoints, and the rest and hold frames."""
    calib, _, _, _ = _linear_world(n_keys=4, jac=False, size=0.05, seed=seed)
    t = 200
    shown = np.zeros((t, 4))
    talk = np.r_[0:40, 70:110, 150:170]
    shown[talk, 0] = 0.45 + 0.4 * np.sin(np.arange(len(talk)) * 0.7)  # the clip starts mid-speech
    shown[80:100, 1:3] = 0.6  # a smile while talking
    hold = np.arange(110, 150)
    shown[hold] = [0.9, -1.2, -1.2, 1.0]  # jaw open + pucker; the narrow mouth reads as negative smiles
    rest = np.flatnonzero(~shown.any(axis=1))  # 40-69 and 170-199
    disp = calib.key_values - calib.neutral_values
    noise = np.random.default_rng(seed).normal(scale=1e-4, size=(t, calib.num_kp, 2))
    values = calib.neutral_values + np.einsum("tn,nkc->tkc", shown, disp) + noise
    return calib, shown, values, rest, hold


def test_find_neutral_ignores_negative_cross_talk():
    calib, shown, values, rest, hold = _pucker_hold_world()
    basis = calib.basis()
    targets = (values - values[0]).reshape(len(values), -1)  # relative to the clip's (expressive) frame 0
    u = np.linalg.lstsq(basis, targets.T, rcond=None)[0].T
    old = int(np.argmin(u.sum(axis=1)))  # the former criterion: the least summed weight
    assert old in hold  # jaw 0.9 + pucker 1.0 - 2 x 1.2 of smile sums below a rest frame's 0
    ref = find_neutral(basis, targets, 0, 1e-9)
    assert ref in rest
    cost = neutral_cost(u)
    assert cost[hold].min() > 2 * cost[rest].max()  # the hold sits far above the clip on jaw and pucker

    # the whole solve, from the expressive frame 0 as the clip's reference: measured from rest, the jaw follows
    res = solve_weights(calib, values, None, 0, regularization=1e-9, remove_head=False)
    assert res.reference in rest
    jaw = np.clip(shown[:, 0], 0, 1)
    assert np.corrcoef(res.weights[:, 0], jaw)[0, 1] > 0.95
    np.testing.assert_allclose(res.weights[rest], 0.0, atol=0.01)


def test_neutral_cost_matches_pairwise_definition_and_scales():
    rng = np.random.default_rng(8)
    w = np.round(rng.normal(size=(300, 6)), 1)  # with ties
    pairwise = np.maximum(0.0, w[:, None, :] - w[None, :, :]).sum(axis=(1, 2))
    np.testing.assert_allclose(neutral_cost(w), pairwise, atol=1e-9)
    np.testing.assert_allclose(neutral_cost(w + rng.normal(size=6)), pairwise, atol=1e-9)  # any reference
    assert neutral_cost(np.zeros((0, 3))).shape == (0,)
    np.testing.assert_array_equal(neutral_cost(np.zeros((4, 0))), np.zeros(4))
    # a long clip (10,000 samples x 50 keys): per-key sorting, no T x T x K array (that would be 40 GB)
    big = rng.normal(size=(10_000, 50))
    big[1234] -= 5.0
    assert neutral_cost(big).shape == (10_000,)
    basis = rng.normal(size=(120, 50))
    assert find_neutral(basis, big @ basis.T, 0, 0.01, smooth=0.0) == 1234


def test_pose_columns_absorb_out_of_plane_head_motion():
    rng = np.random.default_rng(11)
    calib, w, values, jacs = _linear_world(jac=False, size=0.05)
    k = calib.num_kp
    yaw = rng.normal(scale=0.03, size=(k, 2))  # what a small head turn does to the keypoints
    turn = np.sin(np.linspace(0, 6, len(values)))
    turn[0] = 0.0
    driven = values + turn[:, None, None] * yaw
    names = calib.key_names
    without = solve_weights(calib, driven, None, 0, regularization=1e-9, remove_head=False, auto_neutral=False)
    posed = Calibration(
        names,
        calib.neutral_values,
        calib.key_values,
        pose_names=["yaw"],
        pose_values=np.stack([calib.neutral_values + yaw, calib.neutral_values - yaw])[None],
    )
    with_pose = solve_weights(posed, driven, None, 0, regularization=1e-9, remove_head=False, auto_neutral=False)
    np.testing.assert_allclose(with_pose.weights, w, atol=1e-5)
    np.testing.assert_allclose(with_pose.pose[:, 0], turn, atol=1e-5)
    assert np.abs(without.weights - w).max() > 0.05


def test_solve_bounded_free_columns_are_unbounded():
    a = np.eye(3)
    b = np.array([[2.0, -3.0, 5.0]])
    w = solve_bounded(a, b, 0.0, free=1)
    np.testing.assert_allclose(w, [[1.0, 0.0, 5.0]], atol=1e-6)


def test_calibration_with_poses_roundtrip(tmp_path):
    calib, *_ = _linear_world()
    k = calib.num_kp
    poses = np.stack([calib.neutral_values + 0.01, calib.neutral_values - 0.01])[None].repeat(2, 0)
    pj = np.repeat(calib.neutral_jacobians[None, None], 2, 0).repeat(2, 1)
    c2 = Calibration(
        calib.key_names,
        calib.neutral_values,
        calib.key_values,
        calib.neutral_jacobians,
        calib.key_jacobians,
        pose_names=["yaw", "pitch"],
        pose_values=poses,
        pose_jacobians=pj,
    )
    c2.save(tmp_path / "c.npz")
    back = Calibration.load(tmp_path / "c.npz")
    assert back.pose_names == ["yaw", "pitch"]
    np.testing.assert_array_equal(back.pose_values, poses)
    assert back.pose_basis(0.1).shape == (6 * k, 2)
    with pytest.raises(FommError, match="pose renders"):
        Calibration(calib.key_names, calib.neutral_values, calib.key_values, pose_names=["yaw"])
