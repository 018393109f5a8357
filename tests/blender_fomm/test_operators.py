"""The add-on end to end, headless: registration, each operator on a generated character, errors, undo."""

from __future__ import annotations

import os

import bpy
import numpy as np
import pytest
from bfomm_helpers import ADDON

from blender_fomm.anim import OWNER_PROP, action_fcurves
from blender_fomm.bones import CONTROL_PROP, bone_name
from ml_core.clip import load_clip
from tools.synth import make_test_character

OPERATORS = ("extract_motion", "bake_shape_keys", "bake_bones", "neural_preview", "calibrate", "cancel")


def _snapshot():
    """What a failed or cancelled operator must leave as it was."""
    keys = {}
    for mesh in bpy.data.meshes:
        if mesh.shape_keys is not None:
            keys[mesh.name] = [(kb.name, kb.value) for kb in mesh.shape_keys.key_blocks]
    anim = {}
    for idb in [*bpy.data.objects, *bpy.data.shape_keys]:
        adt = idb.animation_data
        anim[idb.name] = None if adt is None else (adt.action, len(adt.nla_tracks))
    return (
        sorted(o.name for o in bpy.data.objects),
        sorted(a.name for a in bpy.data.actions),
        sorted(s.name for s in bpy.data.scenes),
        keys,
        anim,
        bpy.context.scene.fomm.clip_path,
    )


def _character(seed=0, **kw):
    rig = make_test_character(seed, **kw)
    scene = bpy.context.scene
    scene.fomm.target_object = rig.mesh
    return rig


def _key_curves(obj):
    action = obj.data.shape_keys.animation_data.action
    return {fc.data_path: fc for fc in action_fcurves(action)}


def test_register_unregister_clean():
    import addon_utils

    for name in OPERATORS:
        assert hasattr(bpy.types, f"FOMM_OT_{name}")
    for panel in ("source", "extract", "target", "bake", "preview"):
        assert getattr(bpy.types, f"FOMM_PT_{panel}").bl_category == "FOMM"
    addon_utils.disable(ADDON, default_set=True)
    try:
        assert not hasattr(bpy.types.Scene, "fomm")
        assert not hasattr(bpy.types.WindowManager, "fomm_job")
        assert not any(hasattr(bpy.types, f"FOMM_OT_{n}") for n in OPERATORS)
        assert not hasattr(bpy.types, "FOMM_PT_bake")
    finally:
        addon_utils.enable(ADDON, default_set=True, handle_error=None)
    assert hasattr(bpy.types.Scene, "fomm") and bpy.context.preferences.addons.get(ADDON) is not None


def test_poll_says_why():
    with pytest.raises(RuntimeError, match="Pick a driving video"):
        bpy.ops.fomm.extract_motion()
    with pytest.raises(RuntimeError, match="target mesh with shape keys"):
        bpy.ops.fomm.bake_shape_keys()
    _character()
    with pytest.raises(RuntimeError, match="Extract a motion clip first"):
        bpy.ops.fomm.bake_shape_keys()
    bpy.context.scene.fomm.bone_mode = "HEAD"
    with pytest.raises(RuntimeError, match="armature and its head bone"):
        bpy.ops.fomm.bake_bones()
    with pytest.raises(RuntimeError, match="No FOMM job is running"):
        bpy.ops.fomm.cancel()


def test_target_change_lists_its_keys():
    rig = _character(naming="custom")
    items = [k.name for k in bpy.context.scene.fomm.keys]
    assert items == [kb.name for kb in rig.mesh.data.shape_keys.key_blocks][1:]
    assert all(k.use for k in bpy.context.scene.fomm.keys)


def test_extract_motion_operator(addon, driving_video):
    s = bpy.context.scene.fomm
    s.video_path = str(driving_video)
    s.crop_mode = "FULL"
    s.video_step = 2
    assert bpy.ops.fomm.extract_motion() == {"FINISHED"}
    clip = load_clip(s.clip_path)
    assert clip.num_frames == 8 and clip.num_kp == 5
    assert np.array_equal(clip.frame_indices, np.arange(0, 16, 2))
    assert "extracted 8 frames" in s.last_report
    assert os.path.dirname(s.clip_path).startswith(str(addon / "cache"))


def test_bad_inputs_one_line_errors_scene_untouched(tmp_path, motion_clip):
    s = bpy.context.scene.fomm
    s.video_path = str(tmp_path / "missing.mp4")
    before = _snapshot()
    with pytest.raises(RuntimeError, match=r"video not found: .*missing\.mp4$"):
        bpy.ops.fomm.extract_motion()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    s.video_path = str(text)
    with pytest.raises(RuntimeError) as err:
        bpy.ops.fomm.extract_motion()
    assert "\n" not in str(err.value).strip() and "Traceback" not in str(err.value)
    assert _snapshot() == before
    assert not list((tmp_path).glob(".*partial*"))
    # a mesh without shape keys
    bare = bpy.data.objects.new("Bare", bpy.data.meshes.new("Bare"))
    bpy.context.scene.collection.objects.link(bare)
    s.target_object = bare
    s.clip_path = str(motion_clip)
    s.method = "MANUAL"
    before = _snapshot()
    with pytest.raises(RuntimeError, match="poll"):
        bpy.ops.fomm.bake_shape_keys()
    assert _snapshot() == before


def test_bake_shape_keys_calibrated(motion_clip):
    scene = bpy.context.scene
    scene.render.fps = 25  # the clip's rate: one key per clip sample
    rig = _character(naming="custom")
    s = scene.fomm
    s.clip_path = str(motion_clip)
    s.tolerance = 0.0
    s.keys[1].use = False
    names = [k.name for k in s.keys if k.use]
    assert bpy.ops.fomm.bake_shape_keys() == {"FINISHED"}
    key = rig.mesh.data.shape_keys
    action = key.animation_data.action
    assert action[OWNER_PROP] == "shape_keys"
    assert key.animation_data.action_slot.target_id_type == "KEY"
    curves = _key_curves(rig.mesh)
    assert len(curves) == len(names)
    for fc in curves.values():
        assert len(fc.keyframe_points) == 16
        co = np.zeros(32)
        fc.keyframe_points.foreach_get("co", co)
        np.testing.assert_array_equal(co[0::2], np.arange(1, 17))
        assert co[1::2].min() >= 0.0 and co[1::2].max() <= 1.0
    # calibration cached and inspectable: renders and the per-key response
    calib_dir = os.path.dirname(s.calibration_path)
    assert os.path.isfile(os.path.join(calib_dir, "renders", "neutral.png"))
    from ml_core.retarget import Calibration

    calib = Calibration.load(s.calibration_path)
    assert calib.key_names == names and calib.meta["object"] == rig.mesh.name
    # a second bake reuses the calibration (no renders, no worker) and replaces only our action
    mtime = os.path.getmtime(s.calibration_path)
    s.tolerance = 0.01
    assert bpy.ops.fomm.bake_shape_keys() == {"FINISHED"}
    assert os.path.getmtime(s.calibration_path) == mtime
    assert sum(1 for a in bpy.data.actions if a.get(OWNER_PROP)) == 1
    assert "after reduction" in s.last_report
    # a calibration made by an earlier version of the model is made again, not used or refused
    calib.meta["checkpoint_hash"] = "an-older-model"
    calib.save(s.calibration_path)
    assert bpy.ops.fomm.bake_shape_keys() == {"FINISHED"}
    assert (
        Calibration.load(s.calibration_path).meta["checkpoint_hash"] == load_clip(motion_clip).checkpoint_hash
    )


def test_bake_shape_keys_manual_and_fps(motion_clip):
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    rig = _character()
    s = scene.fomm
    s.clip_path = str(motion_clip)
    s.method = "MANUAL"
    s.tolerance = 0.0
    s.start_frame = 101
    jaw = rig.names["jaw_open"]
    bpy.ops.fomm.mapping_add()
    s.mappings[0].shape_key = jaw
    s.mappings[0].keypoint, s.mappings[0].axis, s.mappings[0].gain = 2, "Y", 20.0
    assert bpy.ops.fomm.bake_shape_keys() == {"FINISHED"}
    fc = next(iter(_key_curves(rig.mesh).values()))
    n = int(np.floor(15 / 25 * 30 + 1e-6)) + 1  # 16 samples at 25 fps resampled to 30 fps
    assert len(fc.keyframe_points) == n
    assert fc.keyframe_points[0].co[0] == 101 and fc.keyframe_points[-1].co[0] == 100 + n
    s.mappings[0].keypoint = 9  # the tiny model has 5 keypoints
    with pytest.raises(RuntimeError, match="keypoint 9 axis 1 does not exist"):
        bpy.ops.fomm.bake_shape_keys()


def test_bake_bones_control_and_head(motion_clip):
    scene = bpy.context.scene
    scene.render.fps = 25
    rig = _character(with_armature=True)
    s = scene.fomm
    s.clip_path = str(motion_clip)
    s.bone_tolerance = 0.0
    assert bpy.ops.fomm.bake_bones() == {"FINISHED"}
    ctrl = next(o for o in bpy.data.objects if o.get(CONTROL_PROP))
    assert [b.name for b in ctrl.data.bones] == [bone_name(i) for i in range(5)]
    fcs = action_fcurves(ctrl.animation_data.action)
    assert len(fcs) == 5 * 5 and all(len(fc.keyframe_points) == 16 for fc in fcs)
    s.bone_mode = "HEAD"
    s.armature_object = rig.armature
    s.head_bone = rig.bone_name
    assert bpy.ops.fomm.bake_bones() == {"FINISHED"}
    fcs = action_fcurves(rig.armature.animation_data.action)
    assert {fc.data_path.split(".")[-1] for fc in fcs} >= {"location"}
    assert all(f'pose.bones["{rig.bone_name}"]' in fc.data_path for fc in fcs)
    s.head_bone = "nope"
    with pytest.raises(RuntimeError, match="pick the head bone"):
        bpy.ops.fomm.bake_bones()


def test_clip_from_other_model_is_refused(motion_clip, tmp_path):
    clip = load_clip(motion_clip)
    clip.values = np.concatenate([clip.values, clip.values[:, :2]], axis=1)  # 7 keypoints
    clip.jacobians = np.concatenate([clip.jacobians, clip.jacobians[:, :2]], axis=1)
    clip.num_kp = 7
    other = tmp_path / "seven.npz"
    clip.save(other)
    _character()
    s = bpy.context.scene.fomm
    s.clip_path = str(motion_clip)
    assert bpy.ops.fomm.bake_shape_keys() == {"FINISHED"}  # calibrates with the 5-keypoint model
    s.clip_path = str(other)
    before = _snapshot()
    with pytest.raises(RuntimeError, match="the clip has 7 keypoints but the calibration 5"):
        bpy.ops.fomm.bake_shape_keys()
    assert _snapshot() == before


def test_bake_is_one_undo_step(motion_clip):
    rig = _character()
    name = rig.mesh.name  # Python references die with undo: look objects up again by name
    s = bpy.context.scene.fomm
    s.clip_path = str(motion_clip)
    s.method = "MANUAL"
    bpy.ops.fomm.mapping_add()
    s.mappings[0].shape_key = rig.names["jaw_open"]
    bpy.ops.ed.undo_push(message="before bake")
    # as from a button: the operator's own undo step (Python calls push none unless asked)
    assert bpy.ops.fomm.bake_shape_keys("EXEC_DEFAULT", True) == {"FINISHED"}
    mesh = bpy.data.objects[name]
    assert mesh.data.shape_keys.animation_data.action is not None
    bpy.ops.ed.undo()
    mesh = bpy.data.objects[name]
    adt = mesh.data.shape_keys.animation_data
    assert adt is None or adt.action is None
    assert not any(a.get(OWNER_PROP) for a in bpy.data.actions)
    bpy.ops.ed.redo()
    mesh = bpy.data.objects[name]
    assert mesh.data.shape_keys.animation_data.action is not None
