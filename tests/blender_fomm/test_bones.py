"""Bone bakes: control armature (keypoints + Jacobians) and an existing rig's head bone (head motion)."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from bfomm_helpers import make_head, make_rig

from blender_fomm.anim import action_fcurves
from blender_fomm.bones import (
    bake_control_bones,
    bake_head_bone,
    bone_name,
    control_tracks,
    ensure_control_armature,
    plane_for,
)
from ml_core.errors import FommError
from ml_core.retarget import HeadMotion


def _rot(a):
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _clip(t=12, k=4):
    rng = np.random.default_rng(0)
    rest = rng.uniform(-0.6, 0.6, (k, 2))
    shift = np.linspace(0, 0.2, t)[:, None, None] * np.array([1.0, -0.5])
    values = rest + shift + 0 * rest
    theta = np.linspace(0, 0.6, t)
    j0 = np.eye(2) * 0.9
    jac = np.einsum("tij,jk->tik", _rot(theta), np.diag([1.2, 0.8]) @ j0)[:, None].repeat(k, 1)
    jac[0] = j0  # the reference frame: unrotated, unstretched
    theta[0] = 0
    return values, jac, theta


def test_control_armature_follows_keypoints_and_jacobians():
    scene = bpy.context.scene
    face = make_head()
    values, jac, theta = _clip()
    t, k = values.shape[:2]
    plane = plane_for(face)
    arm = ensure_control_armature(scene, values[0], plane)
    assert [b.name for b in arm.data.bones] == [bone_name(i) for i in range(k)]
    disp, angle, stretch = control_tracks(values, jac, 0)
    frames = np.arange(1, t + 1)
    report = bake_control_bones(arm, frames, disp, angle, stretch, plane.half_size)
    assert report.curves == 5 * k and report.keys_before == 5 * k * t
    assert arm.animation_data.action_slot.target_id_type == "OBJECT"
    assert {fc.group.name for fc in action_fcurves(arm.animation_data.action)} == {bone_name(i) for i in range(k)}
    h = plane.half_size
    for f in (1, 6, 12):
        scene.frame_set(f)
        for i in range(k):
            pb = arm.pose.bones[bone_name(i)]
            x, y = values[f - 1, i]
            np.testing.assert_allclose(pb.head, (x * h, 0, -y * h), atol=1e-5)
            # image x axis (1, 0) maps to R(theta) (1, 0) = (cos, sin) in image = (cos, 0, -sin) in space
            m = np.array(pb.matrix)
            xaxis = m[:3, 0] / np.linalg.norm(m[:3, 0])
            np.testing.assert_allclose(xaxis, (np.cos(theta[f - 1]), 0, -np.sin(theta[f - 1])), atol=1e-5)
    scene.frame_set(12)
    sx = arm.pose.bones[bone_name(0)].scale
    assert sx[0] == pytest.approx(1.2, abs=1e-5) and sx[1] == pytest.approx(0.8, abs=1e-5)


def test_control_armature_reused_and_guarded():
    scene = bpy.context.scene
    values, jac, _ = _clip(k=4)
    plane = plane_for(None)
    a1 = ensure_control_armature(scene, values[0], plane)
    a2 = ensure_control_armature(scene, values[0], plane)
    assert a1 == a2 and len(bpy.data.armatures) == 1
    a3 = ensure_control_armature(scene, np.zeros((6, 2)), plane)
    assert a3 == a1 and len(a3.data.bones) == 6
    bpy.data.objects.new("Mine", bpy.data.armatures.new("Mine"))
    with pytest.raises(FommError, match="not this add-on's control armature"):
        ensure_control_armature(scene, values[0], plane, name="Mine")
    disp, angle, stretch = control_tracks(values, jac, 0)
    with pytest.raises(FommError, match="bones but the clip"):
        bake_control_bones(a3, np.arange(len(values)), disp, angle, stretch, 1.0)


@pytest.mark.parametrize("mode", ["QUATERNION", "XYZ", "ZXY", "AXIS_ANGLE"])
def test_head_bone_turns_about_view_axis(mode):
    scene = bpy.context.scene
    rig = make_rig()
    rig.pose.bones["Head"].rotation_mode = mode
    t = 10
    angle = np.linspace(0, 0.8, t)
    trans = np.stack([np.linspace(0, 0.2, t), np.linspace(0, -0.1, t)], 1)
    head = HeadMotion(scale=np.ones(t), angle=angle, rotation=_rot(angle), translation=trans)
    frames = np.arange(1, t + 1)
    bake_head_bone(rig, "Head", frames, head, units=0.5)
    fcs = action_fcurves(rig.animation_data.action)
    assert all(fc.data_path.startswith('pose.bones["Head"]') for fc in fcs)
    for f in (1, 5, 10):
        scene.frame_set(f)
        pb = rig.pose.bones["Head"]
        a = angle[f - 1]
        shift = 0.5 * np.array([trans[f - 1, 0], 0, -trans[f - 1, 1]])  # image y down -> world -Z
        # clockwise on screen seen from the front: the tail swings to the right (+X)
        np.testing.assert_allclose(pb.head, np.array([0, 0, 1.3]) + shift, atol=1e-5)
        np.testing.assert_allclose(
            pb.tail, np.array([0, 0, 1.3]) + shift + 0.5 * np.array([np.sin(a), 0, np.cos(a)]), atol=1e-5
        )


def test_head_bone_from_a_camera_and_errors():
    scene = bpy.context.scene
    rig = make_rig()
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    cam.rotation_euler = (np.pi / 2, 0, np.pi / 2)  # looking along -X (from +X towards the origin)
    bpy.context.view_layer.update()
    t = 5
    angle = np.linspace(0, 0.5, t)
    head = HeadMotion(np.ones(t), angle, _rot(angle), np.zeros((t, 2)))
    bake_head_bone(rig, "Head", np.arange(1, t + 1), head, camera=cam)
    scene.frame_set(5)
    tail = np.array(rig.pose.bones["Head"].tail)
    # from that camera, screen right is +Y: a clockwise turn swings the tail towards +Y
    np.testing.assert_allclose(tail, [0, 0.5 * np.sin(0.5), 1.3 + 0.5 * np.cos(0.5)], atol=1e-5)
    with pytest.raises(FommError, match="has no bone"):
        bake_head_bone(rig, "Skull", np.arange(1, t + 1), head)
    with pytest.raises(FommError, match="pick an armature"):
        bake_head_bone(None, "Head", np.arange(1, t + 1), head)
