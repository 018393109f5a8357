"""Animation writing: bulk F-curves in a slotted action, placement, re-bake ownership, reduction."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from bfomm_helpers import make_head

from blender_fomm.anim import OWNER_PROP, Curve, action_fcurves, own_action, write_action
from blender_fomm.shapekeys import KIND, bake_weights, clip_to_frames, shape_key_path, target_key
from ml_core.errors import FommError


def _weights(t: int, n: int) -> np.ndarray:
    x = np.linspace(0, 4 * np.pi, t)
    return np.stack([(np.sin(x + i) + 1) / 2 for i in range(n)], axis=1)


def _sampled(key, name, frames):
    scene = bpy.context.scene
    out = []
    for f in frames:
        scene.frame_set(int(f))
        out.append(key.key_blocks[name].value)
    return np.array(out)


def test_shape_key_bake_slotted_action():
    obj = make_head()
    names = ["jaw open", "blink"]
    frames = np.arange(1, 41)
    w = _weights(40, 2)
    report = bake_weights(obj, names, frames, w)
    key = obj.data.shape_keys
    action = key.animation_data.action
    assert action is not None and action[OWNER_PROP] == KIND
    assert key.animation_data.action_slot is not None
    assert key.animation_data.action_slot.target_id_type == "KEY"
    assert len(action.layers) == 1 and len(action.layers[0].strips) == 1
    fcs = {fc.data_path: fc for fc in action_fcurves(action)}
    assert set(fcs) == {shape_key_path(n) for n in names}
    for i, n in enumerate(names):
        fc = fcs[shape_key_path(n)]
        assert len(fc.keyframe_points) == 40
        co = np.zeros(80)
        fc.keyframe_points.foreach_get("co", co)
        np.testing.assert_allclose(co[0::2], frames)
        np.testing.assert_allclose(co[1::2], w[:, i], atol=1e-6)
        assert fc.group is not None and fc.group.name == "FOMM Shape Keys"
    np.testing.assert_allclose(_sampled(key, "jaw open", frames[::7]), w[::7, 0], atol=1e-6)
    assert (report.keys_before, report.keys_after, report.frame_start, report.frame_end) == (80, 80, 1, 40)


def test_values_clipped_to_unit_range():
    obj = make_head()
    w = np.linspace(-1, 2, 10)[:, None]
    bake_weights(obj, ["smile.L"], np.arange(10), w)
    fc = action_fcurves(obj.data.shape_keys.animation_data.action)[0]
    co = np.zeros(20)
    fc.keyframe_points.foreach_get("co", co)
    assert co[1::2].min() == 0.0 and co[1::2].max() == 1.0


def test_rebake_replaces_only_own_action():
    obj = make_head()
    key = obj.data.shape_keys
    bake_weights(obj, ["jaw open"], np.arange(1, 11), _weights(10, 1))
    first = key.animation_data.action.name
    user_action = bpy.data.actions.new("MyKeys")  # a user's action lying around is never touched
    user_action.use_fake_user = True
    bake_weights(obj, ["jaw open", "blink"], np.arange(1, 21), _weights(20, 2))
    assert first not in bpy.data.actions  # our old bake is gone
    assert "MyKeys" in bpy.data.actions
    assert len(action_fcurves(key.animation_data.action)) == 2
    assert sum(1 for a in bpy.data.actions if a.get(OWNER_PROP)) == 1


def test_user_action_is_never_displaced():
    obj = make_head()
    key = obj.data.shape_keys
    key.key_blocks["blink"].value = 0.3
    key.key_blocks["blink"].keyframe_insert("value", frame=1)
    user = key.animation_data.action
    with pytest.raises(FommError, match="already plays your action"):
        bake_weights(obj, ["jaw open"], np.arange(1, 11), _weights(10, 1))
    assert key.animation_data.action == user
    assert len(bpy.data.actions) == 1  # nothing was created
    report = bake_weights(obj, ["jaw open"], np.arange(1, 11), _weights(10, 1), placement="NLA")
    assert key.animation_data.action == user  # still the user's
    track = key.animation_data.nla_tracks["FOMM shape_keys"]
    assert track.strips[0].action.name == report.action
    assert track.strips[0].action_slot is not None
    # a second NLA bake replaces the strip, not the user's action
    bake_weights(obj, ["jaw open"], np.arange(1, 31), _weights(30, 1), placement="NLA")
    assert len(key.animation_data.nla_tracks) == 1
    assert key.animation_data.nla_tracks[0].strips[0].frame_end == 30
    assert len(bpy.data.actions) == 2
    fc = user.layers[0].strips[0].channelbags[0].fcurves[0]
    assert len(fc.keyframe_points) == 1 and fc.keyframe_points[0].co[1] == pytest.approx(0.3)


def test_switching_placement_moves_our_bake():
    obj = make_head()
    key = obj.data.shape_keys
    bake_weights(obj, ["jaw open"], np.arange(1, 11), _weights(10, 1), placement="NLA")
    bake_weights(obj, ["jaw open"], np.arange(1, 11), _weights(10, 1), placement="ACTIVE")
    assert len(key.animation_data.nla_tracks) == 0
    assert own_action(key, KIND) is key.animation_data.action
    assert len(bpy.data.actions) == 1


def test_reduction_bounded_error_and_report():
    obj = make_head()
    frames = np.arange(1, 501)
    w = _weights(500, 3)
    tol = 0.01
    report = bake_weights(obj, ["jaw open", "smile.L", "blink"], frames, w, tolerance=tol)
    assert report.keys_before == 1500 and report.keys_after < 1500 / 3
    key = obj.data.shape_keys
    got = _sampled(key, "smile.L", frames)
    assert np.abs(got - w[:, 1]).max() <= tol + 1e-6


def test_bad_inputs_leave_scene_untouched():
    obj = make_head()
    with pytest.raises(FommError, match="no shape key 'nope'"):
        bake_weights(obj, ["nope"], np.arange(3), np.zeros((3, 1)))
    with pytest.raises(FommError, match="do not match"):
        bake_weights(obj, ["blink"], np.arange(3), np.zeros((4, 1)))
    bare = bpy.data.objects.new("Bare", bpy.data.meshes.new("Bare"))
    with pytest.raises(FommError, match="no shape keys"):
        target_key(bare)
    with pytest.raises(FommError, match="no target object"):
        target_key(None)
    with pytest.raises(FommError, match="non-finite"):
        write_action(obj.data.shape_keys, [Curve(shape_key_path("blink"), 0, [1, 2], [0, np.nan])], kind=KIND)
    with pytest.raises(FommError, match="unknown placement"):
        bake_weights(obj, ["blink"], np.arange(3), np.zeros((3, 1)), placement="SIDEWAYS")
    assert len(bpy.data.actions) == 0 and obj.data.shape_keys.animation_data is None


def test_clip_to_frames_uses_scene_fps():
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    times = np.arange(0, 61) / 30.0 + 5.0  # 2 s at 30 fps, starting 5 s into the video
    frames, vals = clip_to_frames(times, times[:, None] - 5.0, scene, start_frame=10)
    np.testing.assert_array_equal(frames, np.arange(10, 59))
    np.testing.assert_allclose(vals[:, 0], np.arange(49) / 24.0)
