"""The take leaves Blender (issue 14): the head bone's 3-D rotation, the ARKit table, the Live Link Face CSV, one
take for glTF (read back from the .glb's JSON) and FBX (re-imported), on the bpy wheels 4.5, 5.0 and 5.2."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

from blender_fomm import bones, export, shapekeys
from blender_fomm.anim import KINDS_PROP, OWNER_PROP, action_fcurves
from ml_core.headpose import HeadPose, matrix_to_euler, pose_from_json
from ml_core.livelink import HEAD_SIGNS, HEADER
from tools.synth import CURVE_IDS, make_test_character

FRAMES = np.arange(1, 21)


def _character(naming: str = "arkit"):
    rig = make_test_character(3, naming=naming, with_armature=True)
    s = bpy.context.scene.fomm
    s.target_object = rig.mesh
    s.armature_object = rig.armature
    s.head_bone = rig.bone_name
    return rig


def _pose(n: int) -> HeadPose:
    t = np.linspace(0, 1, n)
    return HeadPose(
        yaw=0.4 * np.sin(2 * np.pi * t),
        pitch=0.2 * np.sin(4 * np.pi * t),
        roll=0.15 * np.sin(6 * np.pi * t),
        scale=np.ones(n),
        translation=np.zeros((n, 2)),
    )


def _weights(n: int, k: int) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return np.clip(0.5 + 0.5 * np.sin(2 * np.pi * (t * (1 + np.arange(k)) + 0.1 * np.arange(k))), 0, 1)


def _bake_take(rig, *, join: bool = True):
    """Bake known weights onto the shape keys and a known pose onto the head bone (as the bake operators do)."""
    names = [rig.names[sid] for sid in CURVE_IDS]
    w = _weights(len(FRAMES), len(names))
    shapekeys.bake_weights(rig.mesh, names, FRAMES, w)
    pose = _pose(len(FRAMES))
    bones.bake_head_bone(rig.armature, rig.bone_name, FRAMES, pose, use_translation=False)
    take = export.join_take(bpy.context.scene) if join else None
    return names, w, pose, take


def _bone_world_angles(rig) -> np.ndarray:
    arm, pb = rig.armature, rig.armature.pose.bones[rig.bone_name]
    rest = np.array((arm.matrix_world @ pb.bone.matrix_local).to_3x3().normalized())
    out = []
    for f in FRAMES:
        bpy.context.scene.frame_set(int(f))
        world = np.array((arm.matrix_world @ pb.matrix).to_3x3().normalized())
        out.append(matrix_to_euler(world @ rest.T))
    return np.array(out)


def test_head_bone_follows_the_3d_rotation_about_the_view_axes():
    rig = _character()
    pose = _pose(len(FRAMES))
    bones.bake_head_bone(rig.armature, rig.bone_name, FRAMES, pose, use_translation=False)
    np.testing.assert_allclose(_bone_world_angles(rig), pose.angles, atol=1e-4)
    # a camera on the character's right (looking along -x): yaw is still about the camera's up axis (world z)
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    bpy.context.scene.collection.objects.link(cam)
    cam.rotation_euler = (np.pi / 2, 0.0, np.pi / 2)
    bpy.context.view_layer.update()
    only_yaw = HeadPose(pose.yaw, 0 * pose.yaw, 0 * pose.yaw, pose.scale, pose.translation)
    bones.bake_head_bone(rig.armature, rig.bone_name, FRAMES, only_yaw, camera=cam, use_translation=False)
    np.testing.assert_allclose(_bone_world_angles(rig)[:, 0], pose.yaw, atol=1e-4)


def test_arkit_table_fills_from_names_keeps_edits_and_saves(tmp_path):
    rig = _character("arkit")
    s = bpy.context.scene.fomm
    assert len(s.arkit_map) == 8  # filled when the target was picked
    assert bpy.ops.fomm.arkit_fill() == {"FINISHED"}
    table = {i.name: i.arkit for i in s.arkit_map}
    assert table[rig.names["jaw_open"]] == "jawOpen"
    assert table[rig.names["blink_L"]] == "eyeBlinkLeft"
    assert all(v != "NONE" for v in table.values())
    s.arkit_map[0].arkit = "tongueOut"  # an edit by hand
    assert bpy.ops.fomm.arkit_fill() == {"FINISHED"}
    assert s.arkit_map[0].arkit == "tongueOut"
    assert bpy.ops.fomm.arkit_fill(keep_edits=False) == {"FINISHED"}
    assert s.arkit_map[0].arkit == "jawOpen"
    s.arkit_map[1].arkit = "cheekPuff"
    path = tmp_path / "saved.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert bpy.context.scene.fomm.arkit_map[1].arkit == "cheekPuff"


def test_custom_names_map_by_hand():
    _character("custom")
    s = bpy.context.scene.fomm
    assert all(i.arkit == "NONE" for i in s.arkit_map)
    with pytest.raises(RuntimeError, match="Pick a target mesh with shape keys"):
        s.target_object = None
        bpy.ops.fomm.arkit_fill()


def test_livelink_csv_follows_the_baked_curves(tmp_path):
    rig = _character("arkit")
    names, w, pose, take = _bake_take(rig)
    out = tmp_path / "take.csv"
    assert bpy.ops.fomm.export_livelink_csv(filepath=str(out)) == {"FINISHED"}
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(HEADER) and len(rows) == 1 + len(FRAMES)
    body = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert np.all(body[:, 0] == 61)
    for sid, column in (("jaw_open", "JawOpen"), ("blink_L", "EyeBlinkLeft"), ("blink_R", "EyeBlinkRight")):
        baked = w[:, names.index(rig.names[sid])]
        np.testing.assert_allclose(body[:, HEADER.index(column) - 1], baked, atol=1e-6)
    assert np.all(body[:, HEADER.index("TongueOut") - 1] == 0)
    head = body[:, HEADER.index("HeadYaw") - 1 : HEADER.index("HeadRoll")]
    np.testing.assert_allclose(head, pose.angles * np.asarray(HEAD_SIGNS), atol=1e-6)
    assert np.all(body[:, -6:] == 0)
    assert rows[1][0] == "00:00:00:01.000"  # frame 1 at the scene's 24 fps


def test_livelink_csv_bad_inputs(tmp_path):
    rig = _character("arkit")
    out = tmp_path / "take.csv"
    with pytest.raises(RuntimeError, match="nothing baked to export on"):
        bpy.ops.fomm.export_livelink_csv(filepath=str(out))
    _bake_take(rig)
    s = bpy.context.scene.fomm
    for item in s.arkit_map:
        item.arkit = "NONE"
    with pytest.raises(RuntimeError, match="no baked shape key is mapped to an ARKit name"):
        bpy.ops.fomm.export_livelink_csv(filepath=str(out))
    assert bpy.ops.fomm.arkit_fill(keep_edits=False) == {"FINISHED"}
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    unwritable = r"cannot write .*take\.csv.*(pick a writable folder|is a file, not a folder)"
    with pytest.raises(RuntimeError, match=unwritable):
        bpy.ops.fomm.export_livelink_csv(filepath=str(blocker / "take.csv"))
    s.arkit_map[1].arkit = s.arkit_map[0].arkit
    with pytest.raises(RuntimeError, match="two shape keys are mapped to jawOpen"):
        bpy.ops.fomm.export_livelink_csv(filepath=str(out))
    assert blocker.read_text() == "keep me" and not out.exists()


def export_gltf_default(blend: Path, glb: Path) -> None:
    """Blender's own glTF exporter with its default options, on the saved file, in a fresh bpy process (the
    same Python): bpy 4.5 hangs at exit after a glTF export in a process that has imported scipy."""
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    code = (
        "import bpy, sys\n"
        f"bpy.ops.wm.open_mainfile(filepath={str(blend)!r})\n"
        f"sys.exit(0 if 'FINISHED' in bpy.ops.export_scene.gltf(filepath={str(glb)!r}) else 1)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)


def _relative_angles(quats: np.ndarray) -> np.ndarray:
    """Rotation angle of q_t * conj(q_0) for unit quaternions [T,4] (x, y, z, w)."""
    q0 = quats[0] * np.array([-1.0, -1.0, -1.0, 1.0])
    x1, y1, z1, w1 = quats.T
    x2, y2, z2, w2 = q0
    w = w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2
    return 2 * np.arccos(np.clip(np.abs(w), 0.0, 1.0))


def _glb_json(path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    magic, _version, _length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF"
    n, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON"
    doc = json.loads(data[20 : 20 + n])
    m, kind = struct.unpack_from("<I4s", data, 20 + n)
    assert kind == b"BIN\x00"
    return doc, data[28 + n : 28 + n + m]


def _accessor(doc: dict, blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    assert acc["componentType"] == 5126  # float
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    arr = np.frombuffer(blob, dtype="<f4", count=acc["count"] * width, offset=start)
    return arr.reshape(acc["count"], width)


def test_one_take_exports_as_one_gltf_animation(tmp_path):
    rig = _character("arkit")
    names, w, _pose_, take = _bake_take(rig)
    assert take is not None and take[OWNER_PROP] == "take" and list(take[KINDS_PROP]) == ["head_bone", "shape_keys"]
    assert rig.armature.animation_data.action == take == rig.mesh.data.shape_keys.animation_data.action
    assert {s.target_id_type for s in take.slots} == {"OBJECT", "KEY"}
    assert sum(1 for a in bpy.data.actions if a.get(OWNER_PROP)) == 1  # the two bakes were folded in
    path = tmp_path / "take.glb"
    export_gltf_default(tmp_path / "take.blend", path)
    doc, blob = _glb_json(path)
    assert len(doc["animations"]) == 1
    anim = doc["animations"][0]
    nodes = doc["nodes"]
    paths = {(nodes[c["target"]["node"]]["name"], c["target"]["path"]) for c in anim["channels"]}
    assert (rig.bone_name, "rotation") in paths
    weights = [c for c in anim["channels"] if c["target"]["path"] == "weights"]
    assert len(weights) == 1 and nodes[weights[0]["target"]["node"]]["name"] == rig.mesh.name
    sampler = anim["samplers"][weights[0]["sampler"]]
    times = _accessor(doc, blob, sampler["input"]).ravel()
    assert len(times) == len(FRAMES)
    np.testing.assert_allclose(times, FRAMES / bpy.context.scene.render.fps, atol=1e-5)  # frame / fps
    values = _accessor(doc, blob, sampler["output"]).reshape(len(FRAMES), -1)
    order = [kb.name for kb in rig.mesh.data.shape_keys.key_blocks][1:]
    for sid in ("jaw_open", "blink_L", "smile_R"):
        name = rig.names[sid]
        np.testing.assert_allclose(values[:, order.index(name)], w[:, names.index(name)], atol=1e-5)
    rot = next(c for c in anim["channels"] if c["target"]["path"] == "rotation")
    assert _accessor(doc, blob, anim["samplers"][rot["sampler"]]["input"]).shape[0] == len(FRAMES)
    # the bone's turn from frame to frame matches the bake (relative angles do not depend on the rest frames)
    quats = _accessor(doc, blob, anim["samplers"][rot["sampler"]]["output"])  # x, y, z, w
    pb = rig.armature.pose.bones[rig.bone_name]
    baked = []
    for f in FRAMES:
        bpy.context.scene.frame_set(int(f))
        q = pb.rotation_quaternion
        baked.append((q.x, q.y, q.z, q.w))
    np.testing.assert_allclose(_relative_angles(quats), _relative_angles(np.array(baked)), atol=1e-4)


def test_rebake_after_join_replaces_the_take():
    rig = _character("arkit")
    names, w, _p, take = _bake_take(rig)
    take_name = take.name
    shapekeys.bake_weights(rig.mesh, names, FRAMES, 1 - w)  # a new shape-key bake unassigns the take from the Key
    assert rig.armature.animation_data.action.name == take_name
    new = export.join_take(bpy.context.scene)
    assert new is not None and take_name not in bpy.data.actions
    assert sum(1 for a in bpy.data.actions if a.get(OWNER_PROP)) == 1
    fc = next(f for f in action_fcurves(new) if f.data_path == shapekeys.shape_key_path(rig.names["jaw_open"]))
    np.testing.assert_allclose(
        [fc.evaluate(float(f)) for f in FRAMES], 1 - w[:, names.index(rig.names["jaw_open"])], atol=1e-6
    )
    # the head bone's channels came along
    paths = {f.data_path for f in action_fcurves(new)}
    assert any(rig.bone_name in p and "rotation" in p for p in paths)


def test_fbx_take_carries_morph_and_bone_animation(tmp_path):
    rig = _character("arkit")
    names, w, _p, _t = _bake_take(rig)
    path = tmp_path / "take.fbx"
    assert bpy.ops.fomm.export_fbx(filepath=str(path)) == {"FINISHED"}
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["take.fbx"]
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0)  # FBX time = frame / fps, kept as is
    arm = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    mesh = next(o for o in bpy.data.objects if o.type == "MESH")
    arm_paths = {f.data_path for f in action_fcurves(arm.animation_data.action)}
    assert any(rig.bone_name in p and "rotation" in p for p in arm_paths)
    key = mesh.data.shape_keys
    key_curves = {f.data_path: f for f in action_fcurves(key.animation_data.action)}
    jaw = key_curves[shapekeys.shape_key_path(rig.names["jaw_open"])]
    got = np.array([jaw.evaluate(float(f)) for f in FRAMES])
    np.testing.assert_allclose(got, w[:, names.index(rig.names["jaw_open"])], atol=2e-3)


def test_fbx_bad_inputs(tmp_path):
    _character("arkit")
    with pytest.raises(RuntimeError, match="nothing baked to export on"):
        bpy.ops.fomm.export_fbx(filepath=str(tmp_path / "x.fbx"))
    with pytest.raises(RuntimeError, match="it is a folder"):
        bpy.ops.fomm.export_fbx(filepath=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_operators_bake_one_take_with_a_3d_head(motion_clip, tmp_path):
    """Through the operators (worker, calibration by rendering): Bake Shape Keys, then Bake Bones in head mode,
    leave one take on both IDs; the head bake measured yaw and pitch through the target's calibration; the CSV
    has one row per baked frame."""
    rig = _character("arkit")
    scene = bpy.context.scene
    scene.render.fps = 25
    s = scene.fomm
    s.clip_path = str(motion_clip)
    s.calibration_size = 64
    assert bpy.ops.fomm.bake_shape_keys() == {"FINISHED"}
    s.bone_mode = "HEAD"
    assert bpy.ops.fomm.bake_bones() == {"FINISHED"}
    assert "(3-D rotation: calibration)" in s.last_report and "joined" in s.last_report
    take = rig.armature.animation_data.action
    assert take is rig.mesh.data.shape_keys.animation_data.action and take[OWNER_PROP] == "take"
    paths = {f.data_path for f in action_fcurves(take)}
    assert any(rig.bone_name in p and "rotation" in p for p in paths)
    assert shapekeys.shape_key_path(rig.names["jaw_open"]) in paths
    frames, angles = pose_from_json(take[bones.HEAD_POSE_PROP])
    assert len(frames) == 16 and np.abs(angles).max() > 0  # the tiny model's clip: 16 frames
    out = tmp_path / "take.csv"
    assert bpy.ops.fomm.export_livelink_csv(filepath=str(out)) == {"FINISHED"}
    assert len(out.read_text().splitlines()) == 1 + 16
    # baking the shape keys again folds the new bake into a new take (no orphan actions of ours)
    assert bpy.ops.fomm.bake_shape_keys() == {"FINISHED"}
    assert rig.armature.animation_data.action is rig.mesh.data.shape_keys.animation_data.action
    assert sum(1 for a in bpy.data.actions if a.get(OWNER_PROP)) == 1
