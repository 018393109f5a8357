"""Bake motion onto bones.

(a) A control armature: one bone per keypoint, standing on a plane in front of the face; each bone's
    location follows its keypoint (relative to the clip's reference frame) and its rotation and scale
    come from the keypoint's relative Jacobian ``J_t J_ref^-1`` split by polar decomposition.
(b) An existing armature's head bone driven by the clip's global similarity (rotation about the view
    axis, translation in the view plane, optionally uniform scale).

Image coordinates are x right, y down; the plane is seen from the front (-Y looking at +Y) or from a
camera. Control bones point up (+Z), so in a bone's local frame X = right, Y = up, Z = towards the
viewer: image (dx, dy) -> local (dx, -dy), and an image rotation by theta (clockwise on screen) is a
rotation by -theta about local Z.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix, Quaternion, Vector

from ml_core.errors import FommError
from ml_core.headpose import HeadPose, head_deltas, head_rotations, pose_to_json
from ml_core.retarget import (
    HeadMotion,
    polar_decompose,
    relative_jacobians,
    remove_head_motion,
    rotation_angle,
)

from . import persist
from .anim import Curve, WriteReport, write_action

CONTROL_KIND = "control_bones"
HEAD_KIND = "head_bone"
CONTROL_PROP = "fomm_control_rig"
HEAD_POSE_PROP = "fomm_head_pose"


def bone_name(k: int) -> str:
    return f"kp_{k:02d}"


def _pb_path(bone: str, prop: str) -> str:
    return f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{prop}'


@dataclass(frozen=True)
class Plane:
    """Where the control armature stands: centre (world), half-size (world units per normalised unit)."""

    center: tuple[float, float, float]
    half_size: float


def plane_for(obj: bpy.types.Object | None) -> Plane:
    """A plane just in front (-Y) of ``obj``'s bounding box, as tall as it; unit plane at the origin."""
    if obj is None:
        return Plane((0.0, -1.0, 0.0), 0.5)
    corners = np.array([obj.matrix_world @ Vector(c) for c in obj.bound_box])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    half = max(float(hi[2] - lo[2]), float(hi[0] - lo[0]), 1e-3) / 2
    center = ((lo[0] + hi[0]) / 2, lo[1] - 0.2 * half, (lo[2] + hi[2]) / 2)
    return Plane(tuple(float(c) for c in center), half)


def ensure_control_armature(
    scene: bpy.types.Scene, rest_values: np.ndarray, plane: Plane, name: str = "FOMM Controls"
) -> bpy.types.Object:
    """The add-on's control armature (made, or reused when its bone count matches ``rest_values`` [K,2])."""
    k = len(rest_values)
    obj = bpy.data.objects.get(name)
    if obj is not None and (obj.type != "ARMATURE" or not obj.get(CONTROL_PROP)):
        raise FommError(f"an object named '{name}' exists and is not this add-on's control armature: rename it")
    if obj is not None and len(obj.data.bones) == k:
        if obj.name not in scene.objects:
            scene.collection.objects.link(obj)
        return obj
    if obj is not None:  # ours, different keypoint count: rebuild its bones
        arm = obj.data
    else:
        arm = bpy.data.armatures.new(name)
        obj = bpy.data.objects.new(name, arm)
        obj[CONTROL_PROP] = True
        scene.collection.objects.link(obj)
    obj.location = plane.center
    arm.display_type = "STICK"
    _edit_bones(scene, obj, rest_values, plane.half_size)
    return obj


def _edit_bones(scene: bpy.types.Scene, obj: bpy.types.Object, rest: np.ndarray, half: float) -> None:
    view_layer = bpy.context.view_layer if bpy.context.scene == scene else scene.view_layers[0]
    prev_active = view_layer.objects.active
    prev_mode = prev_active.mode if prev_active is not None else "OBJECT"
    if prev_mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = obj
    hidden = obj.hide_get(view_layer=view_layer)
    obj.hide_set(False, view_layer=view_layer)
    length = half * 0.1
    with bpy.context.temp_override(active_object=obj, object=obj, view_layer=view_layer, scene=scene):
        bpy.ops.object.mode_set(mode="EDIT")
        try:
            ebones = obj.data.edit_bones
            for b in list(ebones):
                ebones.remove(b)
            for i, (x, y) in enumerate(np.asarray(rest, dtype=np.float64)):
                eb = ebones.new(bone_name(i))
                eb.head = (x * half, 0.0, -y * half)
                eb.tail = (x * half, 0.0, -y * half + length)
                eb.roll = 0.0
        finally:
            bpy.ops.object.mode_set(mode="OBJECT")
    obj.hide_set(hidden, view_layer=view_layer)
    view_layer.objects.active = prev_active
    for pb in obj.pose.bones:
        pb.rotation_mode = "XYZ"


def control_tracks(
    values: np.ndarray, jacobians: np.ndarray | None, reference: int, *, remove_head: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame, per-keypoint (displacement [T,K,2], angle [T,K], stretch [T,K,2,2]) relative to the
    reference frame (image units and conventions)."""
    values = np.asarray(values, dtype=np.float64)
    jac = None if jacobians is None else np.asarray(jacobians, dtype=np.float64)
    if remove_head:
        values, jac, _ = remove_head_motion(values, jac, reference)
    disp = values - values[reference]
    t, k = values.shape[:2]
    if jac is None:
        return disp, np.zeros((t, k)), np.broadcast_to(np.eye(2), (t, k, 2, 2)).copy()
    rot, stretch = polar_decompose(relative_jacobians(jac, jac[reference]))
    return disp, rotation_angle(rot), stretch


def bake_control_bones(
    arm_obj: bpy.types.Object,
    frames: np.ndarray,
    disp: np.ndarray,
    angle: np.ndarray,
    stretch: np.ndarray,
    half_size: float,
    *,
    placement: str = "ACTIVE",
    tolerance: float = 0.0,
) -> WriteReport:
    """Write location (x, y), rotation (Z euler) and scale (x, y) curves for every control bone."""
    k = disp.shape[1]
    if len(arm_obj.pose.bones) != k:
        raise FommError(f"the control armature has {len(arm_obj.pose.bones)} bones but the clip {k} keypoints")
    curves: list[Curve] = []
    for i in range(k):
        b = bone_name(i)
        curves += [
            Curve(_pb_path(b, "location"), 0, frames, disp[:, i, 0] * half_size, b),
            Curve(_pb_path(b, "location"), 1, frames, -disp[:, i, 1] * half_size, b),
            Curve(_pb_path(b, "rotation_euler"), 2, frames, -np.unwrap(angle[:, i]), b),
            Curve(_pb_path(b, "scale"), 0, frames, stretch[:, i, 0, 0], b),
            Curve(_pb_path(b, "scale"), 1, frames, stretch[:, i, 1, 1], b),
        ]
    return write_action(arm_obj, curves, kind=CONTROL_KIND, placement=placement, tolerance=tolerance)


# --------------------------------------------------------------------------------------------------
# (b) head bone of an existing armature
# --------------------------------------------------------------------------------------------------


def view_basis(camera: bpy.types.Object | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World (right, up, forward) of the view: the camera's, or the front view (-Y looking at +Y)."""
    if camera is None:
        return np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), np.array([0, 1.0, 0])
    m = np.array(camera.matrix_world.to_3x3().normalized())
    return m[:, 0], m[:, 1], -m[:, 2]


def bake_head_bone(
    arm_obj: bpy.types.Object,
    bone: str,
    frames: np.ndarray,
    head: HeadMotion | HeadPose,
    *,
    camera: bpy.types.Object | None = None,
    units: float = 0.15,
    use_translation: bool = True,
    use_scale: bool = False,
    placement: str = "ACTIVE",
    tolerance: float = 0.0,
) -> WriteReport:
    """Drive ``bone`` of ``arm_obj`` so that, seen from ``camera`` (or the front), the head turns, moves
    and scales like the performer's. Curves follow the pose bone's rotation mode."""
    if arm_obj is None or arm_obj.type != "ARMATURE":
        raise FommError("pick an armature object to drive its head bone")
    persist.check_bake_persists(arm_obj)
    pb = arm_obj.pose.bones.get(bone)
    if pb is None:
        raise FommError(f"armature '{arm_obj.name}' has no bone {bone!r}: pick its head bone")
    right, up, forward = view_basis(camera)
    to_arm = np.array(arm_obj.matrix_world.to_3x3().inverted_safe())
    right, up, forward = (to_arm @ v for v in (right, up, forward))
    rest = np.array(pb.bone.matrix_local)
    deltas = head_deltas(  # world-space deltas [T,4,4] about the bone's head
        head_rotations(head),
        head.scale,
        head.translation,
        rest[:3, 3],
        right,
        up,
        forward,
        units,
        use_translation=use_translation,
        use_scale=use_scale,
    )
    basis = np.linalg.inv(rest) @ deltas @ rest  # pose-bone basis matrices [T,4,4]
    loc = basis[:, :3, 3]
    lin = basis[:, :3, :3]
    scl = np.cbrt(np.linalg.det(lin))
    rots = lin / scl[:, None, None]
    curves = [Curve(_pb_path(bone, "location"), i, frames, loc[:, i], bone) for i in range(3)]
    curves += _rotation_curves(pb, bone, frames, rots)
    if use_scale:
        curves += [Curve(_pb_path(bone, "scale"), i, frames, scl, bone) for i in range(3)]
    report = write_action(arm_obj, curves, kind=HEAD_KIND, placement=placement, tolerance=tolerance)
    if isinstance(head, HeadPose):  # the angles, for exporters (Live Link Face CSV) to read as baked
        bpy.data.actions[report.action][HEAD_POSE_PROP] = pose_to_json(frames, head)
    return report


def _rotation_curves(pb, bone: str, frames: np.ndarray, rots: np.ndarray) -> list[Curve]:
    mode = pb.rotation_mode
    if mode in {"QUATERNION", "AXIS_ANGLE"}:
        quats = []
        prev = None
        for r in rots:
            q = Matrix(r.tolist()).to_quaternion()
            if prev is not None and prev.dot(q) < 0:
                q.negate()
            quats.append(q)
            prev = q
        if mode == "QUATERNION":
            arr = np.array([tuple(q) for q in quats])
            prop = "rotation_quaternion"
        else:
            arr = np.array([_axis_angle(q) for q in quats])
            prop = "rotation_axis_angle"
        return [Curve(_pb_path(bone, prop), i, frames, arr[:, i], bone) for i in range(4)]
    eulers = []
    prev = None
    for r in rots:
        e = Matrix(r.tolist()).to_euler(mode, prev) if prev is not None else Matrix(r.tolist()).to_euler(mode)
        eulers.append(tuple(e))
        prev = e
    arr = np.array(eulers)
    return [Curve(_pb_path(bone, "rotation_euler"), i, frames, arr[:, i], bone) for i in range(3)]


def _axis_angle(q: Quaternion) -> tuple[float, float, float, float]:
    axis, angle = q.to_axis_angle()
    return (angle, axis[0], axis[1], axis[2])


def bone_names(obj: bpy.types.Object | None) -> Sequence[str]:
    if obj is None or obj.type != "ARMATURE":
        return []
    return [b.name for b in obj.data.bones]
