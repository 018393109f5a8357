"""Calibration renders: framing on the face, orbit poses, held shape keys restored, nothing left behind."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from mathutils import Matrix, Vector

from blender_fomm.calibration import (
    FACE_LIFT,
    FACE_MARGIN,
    POSE_ANGLE,
    auto_view,
    calibration_key,
    face_region,
    held_shape_keys,
    pose_views,
    render_calibration,
)
from tools.synth import make_test_character


def _project(view, point) -> tuple[float, float, float]:
    """A world point seen from ``view``: (x, y) in units of half the (square) frame, and depth."""
    m = Matrix(view.matrix)
    local = m.inverted() @ Vector(point)
    depth = -local.z
    half = view.ortho_scale / 2 if view.ortho_scale > 0 else depth * view.sensor / (2 * view.lens)
    return local.x / half, local.y / half, depth


def test_auto_view_frames_the_moving_region():
    rig = make_test_character(3)
    names = [kb.name for kb in rig.mesh.data.shape_keys.key_blocks][1:]
    view = auto_view(rig.mesh, names)
    center, side, _ = face_region(rig.mesh, names)
    x, y, depth = _project(view, center)
    # centred across, below the middle by the lift (frame half-side = FACE_MARGIN * side / 2)
    assert abs(x) < 1e-6 and y == pytest.approx(-2 * FACE_LIFT / FACE_MARGIN) and depth > 0
    # every vertex a key moves is inside the frame, with margin
    key = rig.mesh.data.shape_keys
    base = np.array([v.co for v in key.reference_key.data])
    for n in names:
        moved = np.array([v.co for v in key.key_blocks[n].data])
        idx = np.flatnonzero(np.linalg.norm(moved - base, axis=1) > 1e-4)
        for i in idx[:: max(1, len(idx) // 20)]:
            px, py, _ = _project(view, rig.mesh.matrix_world @ Vector(base[i]))
            assert abs(px) <= 1.0 and abs(py) <= 1.0


def test_pose_views_orbit_the_pivot():
    rig = make_test_character(3)
    names = [kb.name for kb in rig.mesh.data.shape_keys.key_blocks][1:]
    view = auto_view(rig.mesh, names)
    pivot = face_region(rig.mesh, names)[0]
    base = _project(view, pivot)
    views = pose_views(view, pivot)
    assert len(views) == 4
    for v in views:
        np.testing.assert_allclose(_project(v, pivot), base, atol=1e-6)  # the pivot stays put
        fwd0 = -np.array(view.matrix)[:3, 2]
        fwd = -np.array(v.matrix)[:3, 2]
        assert abs(np.arccos(np.clip(fwd0 @ fwd, -1, 1)) - POSE_ANGLE) < 1e-6
    # yaw turns about the vertical, pitch about the horizontal
    assert abs(np.array(views[0].matrix)[2, 3] - np.array(view.matrix)[2, 3]) < 1e-9
    assert abs(np.array(views[2].matrix)[0, 3] - np.array(view.matrix)[0, 3]) < 1e-9


def test_held_shape_keys_restores_animation_drivers_and_values():
    rig = make_test_character(2)
    key = rig.mesh.data.shape_keys
    blocks = key.key_blocks
    blocks[1].value = 0.25
    blocks[1].keyframe_insert("value", frame=1)
    action = key.animation_data.action
    slot = key.animation_data.action_slot
    drv = blocks[2].driver_add("value")
    drv.driver.expression = "0.5"
    blocks[3].mute = True
    with held_shape_keys(key) as held:
        assert key.animation_data.action is None and key.animation_data.drivers[0].mute
        for kb in held:
            kb.value = 1.0
            kb.mute = False
    assert key.animation_data.action == action and key.animation_data.action_slot == slot
    assert not key.animation_data.drivers[0].mute
    assert blocks[1].value == 0.25 and blocks[3].mute and blocks[4].value == 0.0


def test_render_calibration_leaves_nothing(tmp_path):
    rig = make_test_character(4)
    names = [kb.name for kb in rig.mesh.data.shape_keys.key_blocks][1:3]
    before = (len(bpy.data.scenes), len(bpy.data.objects), len(bpy.data.cameras), len(bpy.data.worlds))
    values = [kb.value for kb in rig.mesh.data.shape_keys.key_blocks]
    paths = render_calibration(rig.mesh, names, auto_view(rig.mesh, names), tmp_path, size=64)
    assert [p.name for p in paths] == [
        "neutral.png",
        "key_000.png",
        "key_001.png",
        "pose_yaw_plus.png",
        "pose_yaw_minus.png",
        "pose_pitch_plus.png",
        "pose_pitch_minus.png",
    ]
    assert all(p.stat().st_size > 0 for p in paths)
    after = (len(bpy.data.scenes), len(bpy.data.objects), len(bpy.data.cameras), len(bpy.data.worlds))
    assert after == before
    assert [kb.value for kb in rig.mesh.data.shape_keys.key_blocks] == values
    assert rig.mesh.name in bpy.context.scene.objects


def test_calibration_key_tracks_mesh_state():
    rig = make_test_character(4)
    names = [kb.name for kb in rig.mesh.data.shape_keys.key_blocks][1:]
    view = auto_view(rig.mesh, names)
    k1 = calibration_key(rig.mesh, names, view, 128, "model-a")
    assert calibration_key(rig.mesh, names, view, 128, "model-a") == k1
    assert calibration_key(rig.mesh, names, view, 128, "model-b") != k1
    assert calibration_key(rig.mesh, names[:-1], view, 128, "model-a") != k1
    kb = rig.mesh.data.shape_keys.key_blocks[names[0]]
    kb.data[0].co.z += 0.01
    assert calibration_key(rig.mesh, names, view, 128, "model-a") != k1
