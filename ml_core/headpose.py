"""Head rotation in 3-D from a motion clip, and the numpy side of baking the head bone (no torch, no bpy).

Every consumer (the head bone bake, the Live Link Face CSV, benchmarks) reads the head's angles through
:func:`estimate_head_pose`, so they all see the same numbers.

Angles are those of the performer's head relative to the clip's reference frame (neutral = the reference
frame), about the axes of the view the character is calibrated from: ``yaw`` about the view's up axis,
``pitch`` about its right axis, ``roll`` about its forward axis (the direction the camera looks). In view
coordinates (x right, y forward, z up; right-handed) the head's rotation is ``Rz(yaw) @ Rx(pitch) @ Ry(roll)``,
the composition :mod:`tools.synth` uses for its heads (camera looking along +Y). Radians throughout; a positive
roll turns the face clockwise on screen, like :attr:`ml_core.retarget.HeadMotion.angle`.

How the angles are measured:

- ``roll``: from the clip's similarity alignment (:func:`ml_core.retarget.remove_head_motion`), the in-plane
  angle, less what a turn and a nod add to it: to first order as measured on the calibration's pose renders
  (:func:`in_plane_rates`; the detector's keypoints tilt with a turn), and exactly for the geometry (for a
  face seen head-on, the in-plane angle of ``Rz(yaw) Rx(pitch) Ry(roll)`` is
  ``roll + atan2(A02 - A20, A00 + A22)`` with ``A = Rz(yaw) Rx(pitch)``).
- ``yaw`` and ``pitch``: from a calibration's out-of-plane pose renders (the neutral face seen with the camera
  orbited by +/- the pose angle about its up and right axes, :class:`ml_core.retarget.Calibration`). The
  per-frame solve (:func:`ml_core.retarget.solve_weights`, expression keys bounded, pose columns free) gives
  each frame's pose coefficient ``p`` in units of the pose angle ``a``; since the keypoints move with the sine
  of the angle, the angle is ``-asin(p sin a)`` (the minus: orbiting the camera one way shows the face turned
  the other way). The calibration is the target character's when there is one, otherwise the model's own
  head-pose calibration (:func:`model_head_calibration`); with neither, yaw and pitch are 0 (``source``
  ``"in-plane"``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ml_core.errors import FommError
from ml_core.retarget import (
    Calibration,
    HeadMotion,
    clip_features,
    remove_head_motion,
    resample,
    solve_bounded,
)

#: The default model's head-pose calibration (a synthetic head, rendered turned and nodded).
MODEL_HEAD_CALIBRATION = Path(__file__).resolve().parent / "assets" / "default" / "headpose.npz"
DEFAULT_POSE_ANGLE_DEG = 8.0


@dataclass(frozen=True)
class HeadPose:
    """Per-frame head pose relative to the reference frame: ``yaw``, ``pitch``, ``roll`` [T] radians (see the
    module docstring for the axes), ``scale`` [T] (1 = reference size), ``translation`` [T,2] (keypoint centroid
    displacement, normalised image units, x right, y down), ``reference`` (the neutral sample) and ``source``
    (``"calibration"``, ``"model"`` or ``"in-plane"``: what measured yaw and pitch)."""

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    scale: np.ndarray
    translation: np.ndarray
    reference: int = 0
    source: str = "in-plane"

    def __len__(self) -> int:
        return len(self.roll)

    @property
    def angles(self) -> np.ndarray:
        """[T,3]: yaw, pitch, roll (radians)."""
        return np.stack([self.yaw, self.pitch, self.roll], axis=1)

    def rotations(self) -> np.ndarray:
        """[T,3,3] rotation matrices in view coordinates (x right, y forward, z up)."""
        return euler_to_matrix(self.yaw, self.pitch, self.roll)


# --------------------------------------------------------------------------------------------------
# Rotations
# --------------------------------------------------------------------------------------------------


def _rx(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def euler_to_matrix(yaw, pitch, roll) -> np.ndarray:
    """``Rz(yaw) @ Rx(pitch) @ Ry(roll)`` for arrays of angles (radians) -> [...,3,3]."""
    y, p, r = (np.asarray(a, dtype=np.float64) for a in (yaw, pitch, roll))
    return _rz(y) @ _rx(p) @ _ry(r)


def matrix_to_euler(rot: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_to_matrix`: [...,3,3] -> [...,3] (yaw, pitch, roll), pitch in [-pi/2, pi/2]."""
    r = np.asarray(rot, dtype=np.float64)
    pitch = np.arcsin(np.clip(r[..., 2, 1], -1.0, 1.0))
    yaw = np.arctan2(-r[..., 0, 1], r[..., 1, 1])
    roll = np.arctan2(-r[..., 2, 0], r[..., 2, 2])
    return np.stack([yaw, pitch, roll], axis=-1)


def roll_from_in_plane(in_plane: np.ndarray, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """The roll that, after ``yaw`` and ``pitch``, shows the face turned by ``in_plane`` (clockwise) on screen."""
    a = euler_to_matrix(yaw, pitch, np.zeros_like(np.asarray(yaw, dtype=np.float64)))
    return np.asarray(in_plane, dtype=np.float64) - np.arctan2(a[..., 0, 2] - a[..., 2, 0], a[..., 0, 0] + a[..., 2, 2])


# --------------------------------------------------------------------------------------------------
# Estimation
# --------------------------------------------------------------------------------------------------


def pose_angle(calibration: Calibration) -> float:
    """The calibration's pose-render angle (radians)."""
    return float(np.radians(calibration.meta.get("pose_angle_deg", DEFAULT_POSE_ANGLE_DEG)))


def _pose_coefficients(
    calibration: Calibration,
    values: np.ndarray,
    jacobians: np.ndarray | None,
    reference: int,
    regularization: float,
    jacobian_weight: float,
) -> np.ndarray:
    """Per-frame coefficients [T,P] of the calibration's pose columns, solved jointly with its expression keys
    (bounded to [0, 1], regularised) so that an open jaw is not read as a nod; the pose columns are free and
    (nearly) unregularised."""
    feats, _ = clip_features(calibration, values, jacobians, reference, jacobian_weight=jacobian_weight)
    used_jw = jacobian_weight if feats.shape[1] > 2 * calibration.num_kp else 0.0
    keys = calibration.basis(used_jw)
    poses = calibration.pose_basis(used_jw)
    # the ridge term is meant for the expression keys: scaling the pose columns up by ``gain`` divides their
    # share of it by gain^2 (the coefficients are scaled back), so that it does not shrink the angles
    key_norm = np.sqrt((keys**2).sum(axis=0).mean()) if keys.shape[1] else 1.0
    pose_norm = np.maximum(np.sqrt((poses**2).sum(axis=0)), 1e-12)
    gain = 30.0 * np.maximum(key_norm / pose_norm, 1.0)
    basis = np.concatenate([keys, poses * gain], axis=1)
    solved = solve_bounded(basis, feats, regularization, free=poses.shape[1])
    return solved[:, keys.shape[1] :] * gain


def in_plane_rates(calibration: Calibration) -> dict[str, float]:
    """How much in-plane angle (radians of the similarity alignment) each pose adds per radian of head turn,
    measured on the calibration's pose renders. The detector's keypoints are not rigid landmarks: on a turned
    head the similarity fit of all of them tilts a little (0.3 rad per rad of yaw for the default model), which
    would otherwise be read as roll."""
    k = calibration.num_kp
    stack = np.concatenate([calibration.neutral_values[None], calibration.pose_values.reshape(-1, k, 2)])
    _, _, head = remove_head_motion(stack, None, 0)
    ang = head.angle[1:].reshape(len(calibration.pose_names), 2)
    rates = (ang[:, 0] - ang[:, 1]) / (-2.0 * pose_angle(calibration))  # orbiting +a shows the face at -a
    return {name: float(r) for name, r in zip(calibration.pose_names, rates, strict=True)}


def estimate_head_pose(
    values: np.ndarray,
    jacobians: np.ndarray | None = None,
    reference: int = 0,
    calibration: Calibration | None = None,
    *,
    source: str = "calibration",
    regularization: float = 0.1,
    jacobian_weight: float = 0.5,
) -> HeadPose:
    """Yaw, pitch and roll (plus scale and translation) of every clip sample relative to ``reference``.

    ``values`` [T,K,2] and ``jacobians`` [T,K,2,2] (or None) are the clip's. ``calibration`` (with yaw and pitch
    pose renders) measures the out-of-plane turns; ``source`` names it in the result. Without one (or without
    pose renders) yaw and pitch are 0 and only the in-plane roll is measured.
    """
    values = np.asarray(values, dtype=np.float64)
    _, _, head = remove_head_motion(values, None, reference)
    in_plane = np.unwrap(head.angle)
    in_plane = in_plane - in_plane[reference]
    t = len(values)
    yaw = np.zeros(t)
    pitch = np.zeros(t)
    used = "in-plane"
    if calibration is not None and {"yaw", "pitch"} <= set(calibration.pose_names):
        if calibration.num_kp != values.shape[1]:
            raise FommError(
                f"the clip has {values.shape[1]} keypoints but the head-pose calibration {calibration.num_kp}: "
                "extract the clip with the model set in the preferences"
            )
        coef = _pose_coefficients(calibration, values, jacobians, reference, regularization, jacobian_weight)
        s = np.sin(pose_angle(calibration))
        ang = -np.arcsin(np.clip(coef * s, -1.0, 1.0))
        yaw = ang[:, calibration.pose_names.index("yaw")]
        pitch = ang[:, calibration.pose_names.index("pitch")]
        rate = in_plane_rates(calibration)
        in_plane = in_plane - rate["yaw"] * yaw - rate["pitch"] * pitch
        used = source
    roll = roll_from_in_plane(in_plane, yaw, pitch)
    return HeadPose(yaw, pitch, roll, head.scale, head.translation, int(reference), used)


def model_head_calibration(
    checkpoint_hash: str | None, path: str | Path = MODEL_HEAD_CALIBRATION
) -> Calibration | None:
    """The model's own head-pose calibration (made by ``tools/synth/headpose_calibration.py`` on a synthetic
    head), if it was made with the model whose checkpoint hash is ``checkpoint_hash``; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    calib = Calibration.load(path)
    made_by = calib.meta.get("checkpoint_hash")
    if checkpoint_hash and made_by and made_by != checkpoint_hash:
        return None
    return calib


# --------------------------------------------------------------------------------------------------
# Scene frames and the bone
# --------------------------------------------------------------------------------------------------


def resample_head_pose(pose: HeadPose, times: np.ndarray, fps: float, start_frame: int) -> tuple[np.ndarray, HeadPose]:
    """Clip samples at ``times`` (seconds) -> one sample per scene frame at ``fps`` from ``start_frame``.
    Angles are unwrapped first so that interpolation never takes the long way round."""
    times = np.asarray(times, dtype=np.float64)
    packed = np.column_stack(
        [np.unwrap(pose.yaw), np.unwrap(pose.pitch), np.unwrap(pose.roll), pose.scale, pose.translation]
    )
    frames, vals = resample(times - times[0], packed, fps, start_frame)
    ref_time = times[pose.reference] - times[0]
    ref = int(min(len(frames) - 1, round(ref_time * fps)))
    out = replace(
        pose,
        yaw=vals[:, 0],
        pitch=vals[:, 1],
        roll=vals[:, 2],
        scale=vals[:, 3],
        translation=vals[:, 4:6],
        reference=ref,
    )
    return frames, out


def resample_control_tracks(
    disp: np.ndarray, angle: np.ndarray, stretch: np.ndarray, times: np.ndarray, fps: float, start_frame: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Control-bone tracks (displacement [T,K,2], angle [T,K], stretch [T,K,2,2]) -> one sample per scene frame:
    (frames [M], displacement [M,K,2], angle [M,K], stretch [M,K,2,2]); angles unwrapped first."""
    t, k = disp.shape[:2]
    times = np.asarray(times, dtype=np.float64)
    packed = np.concatenate([disp.reshape(t, -1), np.unwrap(angle, axis=0), stretch.reshape(t, -1)], axis=1)
    frames, vals = resample(times - times[0], packed, fps, start_frame)
    m = len(frames)
    return (
        frames,
        vals[:, : 2 * k].reshape(m, k, 2),
        vals[:, 2 * k : 3 * k],
        vals[:, 3 * k :].reshape(m, k, 2, 2),
    )


def head_deltas(
    rotations: np.ndarray,
    scale: np.ndarray,
    translation: np.ndarray,
    pivot: np.ndarray,
    right: np.ndarray,
    up: np.ndarray,
    forward: np.ndarray,
    units: float,
    *,
    use_translation: bool = True,
    use_scale: bool = False,
) -> np.ndarray:
    """World-space deltas [T,4,4] for the head: about ``pivot``, rotate by ``rotations`` [T,3,3] (view
    coordinates: x ``right``, y ``forward``, z ``up``), scale, then translate in the view plane (``units``
    world units per normalised image unit; image y is down)."""
    basis = np.stack([_unit(right), _unit(forward), _unit(up)], axis=1)  # view -> world
    rot = np.einsum("ij,tjk,lk->til", basis, np.asarray(rotations, dtype=np.float64), basis)
    t = len(rot)
    s = np.asarray(scale, dtype=np.float64) if use_scale else np.ones(t)
    lin = s[:, None, None] * rot
    shift = np.zeros((t, 3))
    if use_translation:
        tr = np.asarray(translation, dtype=np.float64)
        shift = units * (tr[:, :1] * np.asarray(right) - tr[:, 1:2] * np.asarray(up))
    pivot = np.asarray(pivot, dtype=np.float64)
    out = np.tile(np.eye(4), (t, 1, 1))
    out[:, :3, :3] = lin
    out[:, :3, 3] = pivot + shift - np.einsum("tij,j->ti", lin, pivot)
    return out


def in_plane_rotations(angle: np.ndarray) -> np.ndarray:
    """[T,3,3] view-coordinate rotations for an in-plane angle only (clockwise on screen = roll)."""
    a = np.asarray(angle, dtype=np.float64)
    z = np.zeros_like(a)
    return euler_to_matrix(z, z, a)


def head_rotations(head: HeadMotion | HeadPose) -> np.ndarray:
    """[T,3,3] view-coordinate rotations of the head: a :class:`HeadPose`'s 3-D rotation, or a
    :class:`~ml_core.retarget.HeadMotion`'s in-plane angle alone (about the view axis, clockwise on screen for
    positive angles). The ``rotations`` of :func:`head_deltas`."""
    return head.rotations() if isinstance(head, HeadPose) else in_plane_rotations(head.angle)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v)
    if n < 1e-12:
        raise FommError("the view has a zero-length axis: check the camera's scale")
    return v / n


def pose_to_json(frames: Sequence[int] | np.ndarray, pose: HeadPose) -> str:
    """The baked per-frame angles as JSON (stored with the head bone's action for the exporters)."""
    return json.dumps(
        {
            "frames": [int(f) for f in frames],
            "yaw": [round(float(v), 7) for v in pose.yaw],
            "pitch": [round(float(v), 7) for v in pose.pitch],
            "roll": [round(float(v), 7) for v in pose.roll],
            "source": pose.source,
        }
    )


def pose_from_json(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(frames [M], angles [M,3] yaw/pitch/roll radians) from :func:`pose_to_json`'s text."""
    try:
        d = json.loads(text)
        frames = np.asarray(d["frames"], dtype=np.int64)
        angles = np.stack([np.asarray(d[k], dtype=np.float64) for k in ("yaw", "pitch", "roll")], axis=1)
    except (ValueError, KeyError, TypeError) as exc:
        raise FommError(f"the head bake's stored angles are damaged ({exc}); bake the head bone again") from None
    if len(frames) != len(angles):
        raise FommError("the head bake's stored angles are damaged; bake the head bone again")
    return frames, angles
