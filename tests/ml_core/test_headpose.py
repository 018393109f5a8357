"""ml_core.headpose: 3-D head rotation from a clip through a calibration's pose renders, resampling, bone deltas."""

from __future__ import annotations

import numpy as np
import pytest

from ml_core.errors import FommError
from ml_core.headpose import (
    MODEL_HEAD_CALIBRATION,
    HeadPose,
    estimate_head_pose,
    euler_to_matrix,
    head_deltas,
    in_plane_rates,
    in_plane_rotations,
    matrix_to_euler,
    model_head_calibration,
    pose_from_json,
    pose_to_json,
    resample_control_tracks,
    resample_head_pose,
    roll_from_in_plane,
)
from ml_core.retarget import Calibration, remove_head_motion

POSE = np.radians(8.0)


def _head(seed: int = 0, k: int = 12) -> np.ndarray:
    """A rigid 'face': K points in view coordinates (x right, y forward = depth, z up), spread in x and z."""
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(-0.5, 0.5, k), rng.uniform(-0.3, 0.0, k), rng.uniform(-0.5, 0.5, k)])
    return pts - pts.mean(axis=0)


def _project(points: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Orthographic view along +y: image x = x, image y (down) = -z. points [K,3], rot [...,3,3] -> [...,K,2]."""
    p = np.einsum("...ij,kj->...ki", rot, points)
    return np.stack([p[..., 0], -p[..., 2]], axis=-1)


def _calibration(points: np.ndarray, keys: np.ndarray) -> Calibration:
    """Keys [N,K,3] offsets; pose renders: the camera orbited +/- 8 degrees (the face seen turned by -/+ 8)."""
    eye = np.eye(3)
    neutral = _project(points, eye)
    key_values = np.stack([_project(points + d, eye) for d in keys])
    poses = []
    for axis in ("yaw", "pitch"):
        pair = []
        for sign in (1.0, -1.0):
            ang = -sign * POSE
            rot = euler_to_matrix(ang, 0.0, 0.0) if axis == "yaw" else euler_to_matrix(0.0, ang, 0.0)
            pair.append(_project(points, rot))
        poses.append(pair)
    return Calibration(
        ["open", "smile"],
        neutral,
        key_values,
        pose_names=["yaw", "pitch"],
        pose_values=np.array(poses),
        meta={"pose_angle_deg": 8.0},
    )


def _keys(k: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keys = np.zeros((2, k, 3))
    keys[0, : k // 3, 2] = -rng.uniform(0.05, 0.1, k // 3)  # a jaw: some points drop
    keys[1, k // 3 : 2 * k // 3, 0] = rng.uniform(-0.06, 0.06, k - k // 3 - (k - 2 * k // 3))
    return keys


def test_euler_round_trip_and_axes():
    rng = np.random.default_rng(0)
    ang = np.column_stack([rng.uniform(-1, 1, 50), rng.uniform(-1.2, 1.2, 50), rng.uniform(-1, 1, 50)])
    rot = euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2])
    np.testing.assert_allclose(rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(rot), ang, atol=1e-10)
    # yaw turns the face (looking at -y, towards the camera) towards +x; roll moves the top of the head right
    face = euler_to_matrix(0.3, 0.0, 0.0) @ np.array([0.0, -1.0, 0.0])
    assert face[0] > 0
    top = euler_to_matrix(0.0, 0.0, 0.3) @ np.array([0.0, 0.0, 1.0])
    assert top[0] > 0


def test_roll_from_in_plane_undoes_the_geometry():
    ring = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    pts = np.column_stack([0.5 * np.cos(ring), np.zeros(12), 0.5 * np.sin(ring)])
    rng = np.random.default_rng(3)
    yaw, pitch, roll = rng.uniform(-0.45, 0.45, 40), rng.uniform(-0.2, 0.2, 40), rng.uniform(-0.2, 0.2, 40)
    flat = pts  # a face seen head-on, points spread evenly: the formula is exact
    values = _project(flat, euler_to_matrix(yaw, pitch, roll))
    ref = _project(flat, np.eye(3))
    _, _, head = remove_head_motion(np.concatenate([ref[None], values]), None, 0)
    in_plane = head.angle[1:]
    before = np.abs(in_plane - roll)
    after = np.abs(roll_from_in_plane(in_plane, yaw, pitch) - roll)
    assert before.max() > np.radians(1.0)  # a turn and a nod do tilt the projection
    assert after.max() < np.radians(0.01)


def test_estimate_head_pose_recovers_turns_nods_and_tilts():
    pts = _head(k=14)
    keys = _keys(14)
    calib = _calibration(pts, keys)
    t = np.arange(120) / 25.0
    yaw = np.radians(25.0) * np.sin(2 * np.pi * 0.3 * t)
    pitch = np.radians(12.0) * np.sin(2 * np.pi * 0.47 * t)
    roll = np.radians(10.0) * np.sin(2 * np.pi * 0.21 * t)  # frame 0 (the reference) is the neutral pose
    jaw = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, 1)  # talking while turning
    rots = euler_to_matrix(yaw, pitch, roll)
    values = np.stack([_project(pts + jaw[i] * keys[0], rots[i]) for i in range(len(t))])
    values = values + np.array([0.05, -0.02])  # and a shift
    pose = estimate_head_pose(values, None, 0, calib, source="calibration")
    assert pose.source == "calibration" and pose.reference == 0 and len(pose) == len(t)
    truth = np.column_stack([yaw, pitch, roll])
    err = np.degrees(np.abs(pose.angles - truth)).mean(axis=0)
    assert np.all(err < 3.0), err  # degrees: the linearised pose columns at 25 degrees of yaw
    # without a calibration only the in-plane angle is known: yaw and pitch stay 0
    flat = estimate_head_pose(values, None, 0, None)
    assert flat.source == "in-plane" and not flat.yaw.any() and not flat.pitch.any()
    # the clip's keypoint count must match the calibration's
    with pytest.raises(FommError, match="keypoints but the head-pose calibration"):
        estimate_head_pose(values[:, :10], None, 0, calib)


def test_in_plane_rates_measure_a_tilting_detector():
    """A detector whose keypoints tilt when the head turns: the calibration measures the tilt and the
    estimate removes it from the roll."""
    pts = _head(k=14)
    calib = _calibration(pts, _keys(14))
    assert abs(in_plane_rates(calib)["yaw"]) < 0.05
    tilt = 0.3  # radians of in-plane tilt per radian of yaw

    def tilted(values: np.ndarray, yaw: np.ndarray) -> np.ndarray:
        c, s = np.cos(tilt * yaw), np.sin(tilt * yaw)
        rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
        return np.einsum("...ij,...kj->...ki", rot, values)

    yaws = np.array([[-POSE, POSE], [0.0, 0.0]])  # orbit +8 shows the face at -8
    calib.pose_values = tilted(calib.pose_values, yaws)
    assert in_plane_rates(calib)["yaw"] == pytest.approx(tilt, abs=0.05)
    yaw = np.radians(20.0) * np.sin(np.linspace(0, 6, 80))
    values = tilted(_project(pts, euler_to_matrix(yaw, 0 * yaw, 0 * yaw)), yaw)
    pose = estimate_head_pose(values, None, 0, calib)
    assert np.degrees(np.abs(pose.roll)).max() < 1.0
    assert np.degrees(np.abs(pose.yaw - yaw)).mean() < 1.0


def test_shipped_model_head_calibration_is_found_by_hash(tmp_path):
    calib = model_head_calibration(None)
    assert calib is not None and {"yaw", "pitch"} <= set(calib.pose_names)
    made_by = calib.meta["checkpoint_hash"]
    assert model_head_calibration(made_by) is not None
    assert model_head_calibration("0000000000000000") is None
    assert model_head_calibration(made_by, tmp_path / "none.npz") is None
    assert MODEL_HEAD_CALIBRATION.is_file()


def test_resample_head_pose_and_control_tracks():
    t = np.arange(26) / 25.0  # one second at 25 fps -> 31 frames at 30 fps
    ang = np.linspace(0, 0.5, 26)
    pose = HeadPose(ang, -ang, np.unwrap(np.linspace(3.0, 3.4, 26)), np.ones(26), np.zeros((26, 2)), 10, "model")
    frames, out = resample_head_pose(pose, t, 30.0, 5)
    assert frames[0] == 5 and len(frames) == 31 and out.source == "model"
    np.testing.assert_allclose(out.yaw[[0, -1]], [0.0, 0.5])
    np.testing.assert_allclose(out.pitch, -out.yaw)
    assert out.reference == 12  # 0.4 s at 30 fps
    wrapped = HeadPose(ang, ang, np.where(np.arange(26) < 13, 3.1, -3.1), np.ones(26), np.zeros((26, 2)))
    _, w = resample_head_pose(wrapped, t, 30.0, 1)
    assert np.abs(np.diff(w.roll)).max() < 0.1  # no swing through zero
    disp = np.random.default_rng(0).normal(size=(26, 3, 2))
    frames, d, a, s = resample_control_tracks(disp, np.zeros((26, 3)), np.tile(np.eye(2), (26, 3, 1, 1)), t, 25.0, 1)
    np.testing.assert_allclose(d, disp)
    assert a.shape == (26, 3) and s.shape == (26, 3, 2, 2)


def test_head_deltas_rotate_about_the_pivot_in_the_view_frame():
    pivot = np.array([0.0, 0.0, 1.5])
    right, up, forward = np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), np.array([0, 1.0, 0])
    rots = euler_to_matrix(np.array([0.0, 0.4]), np.array([0.0, 0.0]), np.array([0.0, 0.0]))
    d = head_deltas(rots, np.ones(2), np.array([[0, 0], [0.1, 0.2]]), pivot, right, up, forward, 1.0)
    np.testing.assert_allclose(d[0], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(d[1][:3, :3], rots[1], atol=1e-12)
    moved = d[1] @ np.append(pivot, 1.0)
    np.testing.assert_allclose(moved[:3], pivot + [0.1, 0.0, -0.2])  # image y is down
    # a camera looking along -x (right = +y): the same view rotation turns about the camera's up axis
    d2 = head_deltas(
        rots,
        np.ones(2),
        np.zeros((2, 2)),
        pivot,
        np.array([0, 1.0, 0]),
        up,
        np.array([-1.0, 0, 0]),
        1.0,
        use_translation=False,
    )
    axis = np.array([0, 0, 1.0])
    np.testing.assert_allclose(d2[1][:3, :3] @ axis, axis, atol=1e-12)
    # in-plane only = roll about the view axis
    np.testing.assert_allclose(in_plane_rotations(np.array([0.2])), euler_to_matrix([0.0], [0.0], [0.2]))
    with pytest.raises(FommError, match="zero-length axis"):
        head_deltas(rots, np.ones(2), np.zeros((2, 2)), pivot, right, up, np.zeros(3), 1.0)


def test_pose_json_round_trip_and_damage():
    pose = HeadPose(np.array([0.1, 0.2]), np.array([0.0, -0.1]), np.array([0.3, 0.3]), np.ones(2), np.zeros((2, 2)))
    frames, angles = pose_from_json(pose_to_json([1, 2], pose))
    np.testing.assert_array_equal(frames, [1, 2])
    np.testing.assert_allclose(angles, pose.angles)
    with pytest.raises(FommError, match="bake the head bone again"):
        pose_from_json('{"frames": [1]}')
    with pytest.raises(FommError, match="bake the head bone again"):
        pose_from_json('{"frames": [1, 2], "yaw": [0], "pitch": [0], "roll": [0]}')


def test_shipped_head_calibration_belongs_to_the_shipped_model():
    """A retrained default model needs its head-pose calibration made again
    (``python -m tools.synth.headpose_calibration``); otherwise head bakes without a calibrated target fall back to
    the in-plane tilt alone."""
    from ml_core.fileio import sha256_file

    calib = model_head_calibration(None)
    model = MODEL_HEAD_CALIBRATION.parent / "model.safetensors"
    assert calib.meta["checkpoint_hash"] == sha256_file(model)[:16]
    assert calib.num_kp == 14 and calib.has_jacobians
