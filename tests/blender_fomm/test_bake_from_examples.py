"""Bake from Examples, headless: shape keys keyed with keyframe_insert, a bone face rig and custom properties,
the edit-and-bake-again loop, the reference video, and every bad input of the workflow (scene left untouched).

The clip of most tests is made without the network: the synthetic head's ground-truth landmarks (projected mesh
points) over its known performance, so the accuracy checks measure the examples solve and the add-on, not a model.
"""

from __future__ import annotations

import bpy
import numpy as np
import pytest

from blender_fomm.anim import OWNER_PROP, action_fcurves, own_action
from blender_fomm.examples import EXAMPLES_PROP, KIND
from blender_fomm.reference import REFERENCE_PROP, reference_texture
from blender_fomm.shapekeys import shape_key_path
from ml_core.clip import MotionClip
from ml_core.examples import spread_frames
from tools.synth import CURVE_IDS, make_performance, make_test_character
from tools.synth.render import apply_performance, landmarks_for_frames, setup_scene

SEED = 5
FRAMES = 120


def _pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """(clip path, performance) of head SEED performing FRAMES frames, keypoints = ground-truth landmarks."""
    bpy.ops.wm.read_homefile(use_empty=True)
    setup_scene(size=128, fps=25)
    rig = make_test_character(SEED, naming="semantic")
    perf = make_performance(SEED, FRAMES, 25)
    apply_performance(rig, perf)
    values, _ = landmarks_for_frames(rig, range(1, FRAMES + 1))
    k = values.shape[1]
    clip = MotionClip(
        values=values,
        jacobians=np.broadcast_to(np.eye(2, dtype=np.float32), (FRAMES, k, 2, 2)),
        fps=25.0,
        frame_indices=np.arange(FRAMES),
        reference_frame=0,
        crop_box=(0, 0, 128),
        video_size=(128, 128),
        num_kp=k,
        image_size=128,
        config_hash="synthetic",
        checkpoint_hash="landmarks",
        has_jacobians=False,
    )
    path = tmp_path_factory.mktemp("examples") / "oracle.npz"
    clip.save(path)
    return path, perf


def _curves(perf) -> dict[str, np.ndarray]:
    c = np.asarray(perf["curves"], float)
    return {sid: c[:, list(perf["curve_ids"]).index(sid)] for sid in CURVE_IDS}


def _examples_frames(perf, n=8) -> np.ndarray:
    """Scene frames (from 1) an animator would pick: neutral first, then the most different poses."""
    return spread_frames(np.asarray(perf["curves"], float), n) + 1


def _face(oracle):
    path, perf = oracle
    rig = make_test_character(SEED, naming="semantic")
    bpy.context.scene.render.fps = 25  # the video's rate: scene frame n shows sample n - 1
    s = bpy.context.scene.fomm
    s.target_object = rig.mesh
    s.clip_path = str(path)
    s.tolerance = 0.0
    s.start_frame = 1
    return rig, perf


def _key_shapes(rig, perf, frames, ids=CURVE_IDS):
    gt = _curves(perf)
    key = rig.mesh.data.shape_keys
    for f in frames:
        for sid in ids:
            kb = key.key_blocks[rig.names[sid]]
            kb.value = float(gt[sid][f - 1])
            kb.keyframe_insert("value", frame=int(f))


def _evaluate(id_data, path, index, frames):
    fc = next(f for f in action_fcurves(own_action(id_data, KIND)) if f.data_path == path and f.array_index == index)
    return np.array([fc.evaluate(float(f)) for f in frames])


def _snapshot():
    acts = {}
    for a in bpy.data.actions:
        acts[a.name] = [(fc.data_path, fc.array_index, len(fc.keyframe_points)) for fc in action_fcurves(a)]
    anim = {}
    for idb in [*bpy.data.objects, *bpy.data.shape_keys]:
        adt = idb.animation_data
        anim[idb.name] = None if adt is None else (adt.action, len(adt.nla_tracks))
    return acts, anim, sorted(o.name for o in bpy.data.objects)


def test_shape_keys_keyed_with_keyframe_insert_are_the_examples(oracle):
    rig, perf = _face(oracle)
    frames = _examples_frames(perf, 12)
    _key_shapes(rig, perf, frames)
    key = rig.mesh.data.shape_keys
    examples = key.animation_data.action
    keyed = {fc.data_path: len(fc.keyframe_points) for fc in action_fcurves(examples)}
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    s = bpy.context.scene.fomm
    assert "baked 8 channels from 12 example frames over 120 frames" in s.last_report
    assert "no calibration of these shape keys yet (Bake Shape Keys makes one to start from)" in s.last_report
    baked = key.animation_data.action
    assert baked.get(OWNER_PROP) == KIND and baked != examples
    # the examples are untouched, remembered, and kept alive
    assert {fc.data_path: len(fc.keyframe_points) for fc in action_fcurves(examples)} == keyed
    assert key[EXAMPLES_PROP] == examples.name and examples.use_fake_user
    gt = _curves(perf)
    all_frames = np.arange(1, FRAMES + 1)
    for sid in CURVE_IDS:
        got = _evaluate(key, shape_key_path(rig.names[sid]), 0, all_frames)
        assert got.min() >= 0.0 and got.max() <= 1.0
        if np.ptp(gt[sid]) > 0:
            assert _pearson(got, gt[sid]) >= 0.95, sid
    names = [c.name for c in s.example_channels]
    assert sorted(names) == sorted(rig.names[sid] for sid in CURVE_IDS)
    assert all(c.baked and c.loo < 0.5 for c in s.example_channels)


def test_edit_examples_then_bake_again(oracle):
    rig, perf = _face(oracle)
    frames = _examples_frames(perf)
    _key_shapes(rig, perf, frames)
    key = rig.mesh.data.shape_keys
    examples = key.animation_data.action
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    assert bpy.ops.fomm.edit_examples("EXEC_DEFAULT") == {"FINISHED"}
    assert key.animation_data.action == examples and own_action(key, KIND) is None
    assert "editing the examples in" in bpy.context.scene.fomm.last_report
    _key_shapes(rig, perf, [60])  # one more example, keyed the usual way
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    assert "from 9 example frames" in bpy.context.scene.fomm.last_report
    assert own_action(key, KIND) is not None and key.animation_data.action != examples
    # baking again without editing reads the remembered examples
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    assert "from 9 example frames" in bpy.context.scene.fomm.last_report
    assert sum(1 for a in bpy.data.actions if a.get(OWNER_PROP) == KIND) == 1


def test_nla_placement_and_another_scene_rate(oracle):
    rig, perf = _face(oracle)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 50, 1.0
    frames = (_examples_frames(perf) - 1) * 2 + 1  # the same moments of the performance at 50 fps
    gt = _curves(perf)
    key = rig.mesh.data.shape_keys
    jaw = key.key_blocks[rig.names["jaw_open"]]
    for f, g in zip(frames, _examples_frames(perf), strict=True):
        jaw.value = float(gt["jaw_open"][g - 1])
        jaw.keyframe_insert("value", frame=int(f))
    scene.fomm.placement = "NLA"
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    assert "over 239 frames" in scene.fomm.last_report
    assert key.animation_data.action is None and key.animation_data.nla_tracks[0].name == "FOMM examples"
    got = _evaluate(key, shape_key_path(jaw.name), 0, np.arange(1, 2 * FRAMES, 2))
    assert _pearson(got, gt["jaw_open"]) >= 0.95


def _face_rig():
    """An armature with a head bone, a jaw bone and two lid bones (the jaw hinged at the ear, pointing forward)."""
    arm = bpy.data.armatures.new("FaceRig")
    obj = bpy.data.objects.new("FaceRig", arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    head = arm.edit_bones.new("head")
    head.head, head.tail = (0, 0, 0), (0, 0, 0.5)
    for name, h, t in (("jaw", (0, 0, 0.1), (0, -0.3, 0.0)), ("lid.L", (0.1, -0.2, 0.3), (0.1, -0.25, 0.3))):
        b = arm.edit_bones.new(name)
        b.head, b.tail, b.parent = h, t, head
    lid = arm.edit_bones.new("lid.R")
    lid.head, lid.tail, lid.parent = (-0.1, -0.2, 0.3), (-0.1, -0.25, 0.3), head
    bpy.ops.object.mode_set(mode="OBJECT")
    for pb in obj.pose.bones:
        pb.rotation_mode = "XYZ"
    obj.pose.bones["head"].rotation_mode = "QUATERNION"
    return obj


def _pose_rig(obj, perf, frame):
    """The rig's pose at a frame of the known performance: jaw and lids follow the shape-key curves, the head
    bone the head's roll (the rotation about the view axis), a custom property the smile."""
    gt = _curves(perf)
    roll = float(np.asarray(perf["head_rotation"], float)[frame - 1, 2])
    pb = obj.pose.bones
    pb["jaw"].rotation_euler = (0.4 * gt["jaw_open"][frame - 1], 0, 0)
    pb["lid.L"].rotation_euler = (0.7 * gt["blink_L"][frame - 1], 0, 0)
    pb["lid.R"].rotation_euler = (0.7 * gt["blink_R"][frame - 1], 0, 0)
    pb["head"].rotation_quaternion = (np.cos(roll / 2), 0, np.sin(roll / 2), 0)
    obj["smile"] = float(gt["smile_L"][frame - 1])
    for name in ("jaw", "lid.L", "lid.R"):
        pb[name].keyframe_insert("rotation_euler", frame=frame)
    pb["head"].keyframe_insert("rotation_quaternion", frame=frame)
    obj.keyframe_insert('["smile"]', frame=frame)


def test_bone_face_rig_and_custom_property_from_eight_examples(oracle):
    path, perf = oracle
    obj = _face_rig()
    obj["smile"] = 0.0
    obj.id_properties_ui("smile").update(min=0.0, max=1.0)
    bpy.context.scene.render.fps = 25
    s = bpy.context.scene.fomm
    s.armature_object = obj
    s.head_bone = "head"
    s.clip_path = str(path)
    s.bone_tolerance = 0.0
    s.examples_unexplained = "BAKE"
    roll = np.asarray(perf["head_rotation"], float)[:, 2]
    frames = _examples_frames(perf)  # telling frames of the whole performance, as for the shape keys
    for f in frames:
        _pose_rig(obj, perf, int(f))
    examples = obj.animation_data.action
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    assert obj.animation_data.action != examples and obj[EXAMPLES_PROP] == examples.name
    t = np.arange(1, FRAMES + 1)
    gt = _curves(perf)
    jaw = _evaluate(obj, 'pose.bones["jaw"].rotation_euler', 0, t)
    r_jaw = _pearson(jaw, gt["jaw_open"])
    assert r_jaw >= 0.95, r_jaw
    assert _pearson(_evaluate(obj, 'pose.bones["lid.L"].rotation_euler', 0, t), gt["blink_L"]) >= 0.9
    smile = _evaluate(obj, '["smile"]', 0, t)
    assert smile.min() >= 0.0 and smile.max() <= 1.0
    assert _pearson(smile, gt["smile_L"]) >= 0.9
    quat = np.stack([_evaluate(obj, 'pose.bones["head"].rotation_quaternion', i, t) for i in range(4)], 1)
    np.testing.assert_allclose(np.linalg.norm(quat, axis=1), 1.0, atol=1e-3)
    r_roll = _pearson(2 * np.arctan2(quat[:, 2], quat[:, 0]), roll)
    assert r_roll >= 0.9, r_roll


def test_works_with_a_network_clip_and_shows_the_reference_video(motion_clip, driving_video):
    """A clip of the tiny fixture model: the bake runs (its keypoints explain little; bake anyway), and the
    reference video plays beside the character from the start frame."""
    rig = make_test_character(0, naming="custom")
    bpy.context.scene.render.fps = 25
    s = bpy.context.scene.fomm
    s.target_object = rig.mesh
    s.clip_path = str(motion_clip)
    s.video_path = str(driving_video)
    s.start_frame = 10
    s.examples_unexplained = "BAKE"
    kb = rig.mesh.data.shape_keys.key_blocks[rig.names["jaw_open"]]
    for f, v in ((10, 0.0), (14, 1.0), (18, 0.3), (22, 0.8), (25, 0.1)):
        kb.value = v
        kb.keyframe_insert("value", frame=f)
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    assert "from 5 example frames over 16 frames" in s.last_report
    assert bpy.ops.fomm.show_reference("EXEC_DEFAULT") == {"FINISHED"}
    plane = next(o for o in bpy.data.objects if o.get(REFERENCE_PROP))
    tex = reference_texture(plane)
    assert tex.image.source == "MOVIE" and tex.image_user.frame_start == 10
    assert tex.image_user.frame_offset == 0 and plane.location.x < rig.mesh.location.x
    assert bpy.ops.fomm.show_reference("EXEC_DEFAULT") == {"FINISHED"}  # replaced, not doubled
    assert sum(1 for o in bpy.data.objects if o.get(REFERENCE_PROP)) == 1


def _refused(match: str) -> None:
    before = _snapshot()
    with pytest.raises(RuntimeError, match=match):
        bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT")
    assert _snapshot() == before


def test_no_examples(oracle):
    _face(oracle)
    _refused(r"no examples: scrub to telling frames of the performance, pose the target and insert keyframes$")


def test_fewer_examples_than_the_solve_needs(oracle):
    rig, perf = _face(oracle)
    _key_shapes(rig, perf, [20, 40], ids=["jaw_open"])
    _refused(r"2 example frame\(s\) but the solve needs at least 3: key the target on more frames")


def test_examples_outside_the_clip(oracle):
    rig, perf = _face(oracle)
    kb = rig.mesh.data.shape_keys.key_blocks[rig.names["jaw_open"]]
    for f in (200, 210, 230):
        kb.value = f / 300
        kb.keyframe_insert("value", frame=f)
    _refused(r"all 3 keys lie outside the clip's frames 1-120: key poses inside them, or move the Start Frame$")


def test_a_channel_keyed_with_one_value(oracle):
    rig, perf = _face(oracle)
    frames = _examples_frames(perf)
    _key_shapes(rig, perf, frames, ids=["jaw_open"])
    kb = rig.mesh.data.shape_keys.key_blocks[rig.names["smile_L"]]
    kb.value = 0.25
    for f in frames:
        kb.keyframe_insert("value", frame=int(f))
    _refused(rf"'{rig.names['smile_L']}' is keyed with the same value 0.25 on every example")


def test_a_channel_the_motion_cannot_explain(oracle):
    rig, perf = _face(oracle)
    frames = _examples_frames(perf, 10)
    _key_shapes(rig, perf, frames, ids=["jaw_open"])
    rig.mesh["mood"] = 0.0
    rng = np.random.default_rng(0)
    for f in frames:
        rig.mesh["mood"] = float(rng.uniform())
        rig.mesh.keyframe_insert('["mood"]', frame=int(f))
    _refused(
        r"cannot explain 1 keyed channel\(s\), e\.g\. '\[\"mood\"\]' \(each example predicted within .*: add examples"
    )
    s = bpy.context.scene.fomm
    s.examples_unexplained = "SKIP"
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    assert "skipped 1 the motion cannot explain" in s.last_report
    assert own_action(rig.mesh, KIND) is None and own_action(rig.mesh.data.shape_keys, KIND) is not None
    skipped = [c for c in s.example_channels if not c.baked]
    assert [c.name for c in skipped] == ['["mood"]'] and not skipped[0].explained
    assert bpy.ops.fomm.edit_examples("EXEC_DEFAULT") == {"FINISHED"}
    s.examples_unexplained = "BAKE"
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    assert own_action(rig.mesh, KIND) is not None


def test_two_conflicting_keys_on_one_frame(oracle):
    rig, perf = _face(oracle)
    _key_shapes(rig, perf, _examples_frames(perf), ids=["jaw_open"])
    fc = action_fcurves(rig.mesh.data.shape_keys.animation_data.action)[0]
    n = len(fc.keyframe_points)
    fc.keyframe_points.add(1)
    fc.keyframe_points[n].co = (fc.keyframe_points[0].co[0] + 0.2, 0.77)
    fc.update()
    _refused(r"has two keys on frame \d+ \(.* and .*\): keep one of them$")


def test_a_locked_or_driven_channel(oracle):
    rig, perf = _face(oracle)
    _key_shapes(rig, perf, _examples_frames(perf), ids=["jaw_open", "smile_L"])
    key = rig.mesh.data.shape_keys
    fcs = action_fcurves(key.animation_data.action)
    fcs[0].lock = True
    _refused(r"the keyed channel 'Key.*' key_blocks\[.*\]\.value\[0\] is locked: unlock it, or delete its keys$")
    fcs[0].lock = False
    drv = key.key_blocks[rig.names["smile_L"]].driver_add("value")
    drv.driver.expression = "0.5"
    _refused(r"is driven by a driver: remove the driver, or its keys$")
    key.key_blocks[rig.names["smile_L"]].driver_remove("value")
    obj = _face_rig()
    bpy.context.scene.fomm.armature_object = obj
    pb = obj.pose.bones["jaw"]
    for f in (5, 30, 60):
        pb.rotation_euler = (f / 100, 0, 0)
        pb.keyframe_insert("rotation_euler", frame=f)
    pb.lock_rotation[0] = True
    _refused(r"'FaceRig' pose\.bones\[\"jaw\"\]\.rotation_euler\[0\] is locked")


def test_a_clip_of_another_model(oracle, tmp_path):
    from ml_core.clip import load_clip

    rig, perf = _face(oracle)
    _key_shapes(rig, perf, _examples_frames(perf), ids=["jaw_open"])
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    other = load_clip(oracle[0])
    other.checkpoint_hash = "0123456789abcdef0123"
    other.save(tmp_path / "other.npz")
    s = bpy.context.scene.fomm
    s.clip_path = str(tmp_path / "other.npz")
    _refused(r"were learned from a clip of another model \(\d+ keypoints, model landmarks\): extract the clip")
    s.examples_accept_model = True
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}


def test_bake_from_examples_is_one_undo_step(oracle):
    rig, perf = _face(oracle)
    _key_shapes(rig, perf, _examples_frames(perf), ids=["jaw_open"])
    key = rig.mesh.data.shape_keys
    name, examples = key.name, key.animation_data.action.name
    bpy.ops.ed.undo_push(message="before")
    # as from a button: the operator's own undo step (Python calls push none unless asked)
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT", True) == {"FINISHED"}
    assert own_action(bpy.data.shape_keys[name], KIND) is not None
    bpy.ops.ed.undo()
    key = bpy.data.shape_keys[name]
    assert key.animation_data.action.name == examples
    assert not any(a.get(OWNER_PROP) == KIND for a in bpy.data.actions)


def test_a_pose_keyed_into_the_bake_is_not_lost(oracle):
    """Keying a pose while the bake plays writes into the add-on's action: baking again refuses (it would replace
    that key) and says to key on the examples; Edit Examples then Bake works."""
    rig, perf = _face(oracle)
    _key_shapes(rig, perf, _examples_frames(perf), ids=["jaw_open"])
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    kb = rig.mesh.data.shape_keys.key_blocks[rig.names["jaw_open"]]
    kb.value = float(_curves(perf)["jaw_open"][32])  # the performer's jaw on frame 33
    kb.keyframe_insert("value", frame=33)  # lands in the bake, the active action
    _refused(r"keys were added to or changed in the bake 'FOMM examples .*' since it was made, .*: press Edit Examples")
    assert bpy.ops.fomm.edit_examples("EXEC_DEFAULT") == {"FINISHED"}
    kb.value = float(_curves(perf)["jaw_open"][32])
    kb.keyframe_insert("value", frame=33)
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    assert "from 9 example frames" in bpy.context.scene.fomm.last_report


def test_operators_and_panel_registered():
    for name in ("bake_from_examples", "edit_examples", "show_reference"):
        assert hasattr(bpy.types, f"FOMM_OT_{name}")
    assert bpy.types.FOMM_PT_examples.bl_category == "FOMM"
    with pytest.raises(RuntimeError, match="Pick the target mesh or armature you posed"):
        bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT")
    with pytest.raises(RuntimeError, match="no examples to edit: key poses on the target, then Bake from Examples"):
        bpy.ops.fomm.edit_examples("EXEC_DEFAULT")


def test_other_animation_in_the_examples_action_keeps_playing(oracle):
    """Channels of the examples action that are not learned (a body bone keyed outside the clip, a channel skipped as
    unexplained) play on in the bake exactly as keyed, handles and interpolation included."""
    path, perf = oracle
    obj = _face_rig()
    bpy.context.scene.render.fps = 25
    s = bpy.context.scene.fomm
    s.armature_object, s.clip_path = obj, str(path)
    frames = _examples_frames(perf)
    for f in frames:
        _pose_rig(obj, perf, int(f))
    arm = obj.pose.bones["head"]
    for f, z in ((-20, 0.0), (-5, 0.3)):  # keyed before the clip: not an example
        arm.location = (0, 0, z)
        arm.keyframe_insert("location", index=2, frame=f)
    examples = obj.animation_data.action
    original = next(fc for fc in action_fcurves(examples) if fc.data_path.endswith("location"))
    s.examples_unexplained = "BAKE"
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    baked = own_action(obj, KIND)
    copied = next(fc for fc in action_fcurves(baked) if fc.data_path == original.data_path)
    assert copied.array_index == 2 and len(copied.keyframe_points) == 2
    for a, b in zip(original.keyframe_points, copied.keyframe_points, strict=True):
        assert tuple(a.co) == tuple(b.co) and tuple(a.handle_right) == tuple(b.handle_right)
        assert a.interpolation == b.interpolation
    assert copied.evaluate(-12.0) == pytest.approx(original.evaluate(-12.0))


def _calibrated_face(oracle, made_by: str):
    """Head SEED in a fresh scene with the calibration Bake Shape Keys would have cached for it, made from perfect
    keypoints (the clip's model, "landmarks", or ``made_by``); returns (mesh, calibration's key names, perf)."""
    from bench._common import oracle_calibration
    from blender_fomm import calibration
    from blender_fomm.pipeline import plan_calibration
    from blender_fomm.prefs import worker_settings

    path, perf = oracle
    calib = oracle_calibration(SEED, 128, 25)  # leaves a fresh scene holding the head (arbitrary key names)
    scene = bpy.context.scene
    mesh = next(o for o in scene.objects if o.type == "MESH" and o.data.shape_keys)
    s = scene.fomm
    s.target_object, s.camera_object, s.clip_path = mesh, scene.camera, str(path)
    s.tolerance, s.start_frame = 0.0, 1
    scene.render.fps = 25
    ws = worker_settings()
    calib.meta["checkpoint_hash"] = made_by
    calib.save(calibration.cache_dir_for(ws.cache_dir, plan_calibration(scene, ws).key) / calibration.CALIBRATION_FILE)
    return mesh, calib.key_names, perf


def _bake_four_examples(mesh, names, perf, prior: bool) -> tuple[float, str]:
    """Key four spread-out frames of every shape key, bake from examples; mean r over the keys that move."""
    curves = _curves(perf)
    gt = np.stack([curves[sid] for sid in CURVE_IDS], axis=1)  # the calibration's keys are in CURVE_IDS order
    frames = spread_frames(gt, 4) + 1
    key = mesh.data.shape_keys
    for f in frames:
        for i, name in enumerate(names):
            key.key_blocks[name].value = float(gt[f - 1, i])
            key.key_blocks[name].keyframe_insert("value", frame=int(f))
    s = bpy.context.scene.fomm
    s.examples_prior, s.examples_unexplained = prior, "BAKE"
    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}
    all_frames = np.arange(1, FRAMES + 1)
    rs = [
        _pearson(_evaluate(key, shape_key_path(name), 0, all_frames), gt[:, i])
        for i, name in enumerate(names)
        if np.ptp(gt[frames - 1, i]) > 0 and np.ptp(gt[:, i]) > 0
    ]
    return float(np.mean(rs)), s.last_report


def test_shape_keys_start_from_the_calibration(oracle):
    mesh, names, perf = _calibrated_face(oracle, "landmarks")
    alone, report_alone = _bake_four_examples(mesh, names, perf, prior=False)
    assert "calibration" not in report_alone
    assert bpy.ops.fomm.edit_examples("EXEC_DEFAULT") == {"FINISHED"}
    helped, report = _bake_four_examples(mesh, names, perf, prior=True)
    assert f"{len(names)} shape keys started from the calibration" in report
    assert helped >= 0.9 and helped >= alone + 0.05, (alone, helped)


def test_a_calibration_of_another_model_is_not_a_prior(oracle):
    mesh, names, perf = _calibrated_face(oracle, "another-model")
    r, report = _bake_four_examples(mesh, names, perf, prior=True)
    assert "the calibration was made with another model than the clip's" in report
    assert "started from the calibration" not in report
