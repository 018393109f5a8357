"""The add-on end to end, headless: registration, each operator on a generated character, errors, undo."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import bpy
import numpy as np
import pytest
from bfomm_helpers import ADDON, REPO, make_rig, worker_python

from blender_fomm import operators, pipeline
from blender_fomm.anim import OWNER_PROP, action_fcurves
from blender_fomm.bones import CONTROL_PROP, bone_name
from blender_fomm.prefs import worker_settings
from ml_core.clip import load_clip
from ml_core.errors import FommError
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
    assert Calibration.load(s.calibration_path).meta["checkpoint_hash"] == load_clip(motion_clip).checkpoint_hash


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


# ------------------------------------------------------------------------------------------ more bad inputs
def _refused(op, message: str) -> None:
    """``op()`` reports exactly the ERROR ``message`` (one line, no traceback) and leaves the scene as it was."""
    before = _snapshot()
    with pytest.raises(RuntimeError) as err:
        op()
    text = str(err.value).strip()
    assert text == f"Error: {message}", text
    assert _snapshot() == before


def test_steps_without_a_video_or_a_clip():
    """The buttons are greyed out (poll); a script running the steps gets the one-line reason."""
    scene = bpy.context.scene
    _character()
    before = _snapshot()
    with pytest.raises(FommError, match=r"^no video: pick the driving video in the Source panel$"):
        pipeline.extract_step(scene)
    no_clip = r"^no motion clip: extract one from a video, or pick a clip file in the Source panel$"
    for step in (pipeline.bake_shape_keys_step, pipeline.bake_bones_step, pipeline.neural_preview_step):
        with pytest.raises(FommError, match=no_clip):
            step(scene)
    assert _snapshot() == before


def test_manual_mappings_missing_or_two_on_one_key(motion_clip):
    rig = _character()
    s = bpy.context.scene.fomm
    s.clip_path = str(motion_clip)
    s.method = "MANUAL"
    _refused(
        bpy.ops.fomm.bake_shape_keys, "no manual mappings: add one (keypoint, axis, shape key, gain) in the Bake panel"
    )
    bpy.ops.fomm.mapping_add()
    bpy.ops.fomm.mapping_add()
    s.mappings[0].shape_key = s.mappings[1].shape_key = rig.names["jaw_open"]
    _refused(bpy.ops.fomm.bake_shape_keys, "each shape key can have only one manual mapping")


def test_crop_box_of_size_zero(driving_video):
    s = bpy.context.scene.fomm
    s.video_path = str(driving_video)
    s.crop_mode = "BOX"
    s.crop_size = 0
    _refused(bpy.ops.fomm.extract_motion, "the crop box needs a size above 0 pixels")


def test_head_bone_mode_without_an_armature(motion_clip):
    _character()
    s = bpy.context.scene.fomm
    s.clip_path = str(motion_clip)
    s.bone_mode = "HEAD"
    before = _snapshot()
    with pytest.raises(FommError, match=r"^no armature: pick the character's armature in the Target panel$"):
        pipeline.bake_bones_step(bpy.context.scene)  # the button itself is greyed out (test_poll_says_why)
    assert _snapshot() == before


def test_target_that_is_not_a_mesh():
    rig = make_rig("Rig")
    s = bpy.context.scene.fomm
    s.target_object = rig  # a script may set it; the panel offers meshes only
    with pytest.raises(RuntimeError, match=r"poll\(\) Pick a target mesh with shape keys"):
        bpy.ops.fomm.calibrate()
    before = _snapshot()
    with pytest.raises(FommError) as err:
        pipeline.calibrate_step(bpy.context.scene)
    assert str(err.value) == "'Rig' is an armature, not a mesh: pick a mesh with shape keys"
    assert _snapshot() == before


def test_no_shape_keys_ticked(motion_clip):
    _character()
    s = bpy.context.scene.fomm
    s.clip_path = str(motion_clip)
    assert bpy.ops.fomm.select_keys(use=False) == {"FINISHED"}
    for op in (bpy.ops.fomm.bake_shape_keys, bpy.ops.fomm.calibrate):
        _refused(op, "no shape keys selected: tick at least one in the Bake panel")


def test_clip_from_another_checkpoint_is_refused(motion_clip, tmp_path):
    """Same keypoint count, another model (its checkpoint hash differs): calibrating with the preferences' model
    cannot make the clip's keypoints mean what that model's do."""
    clip = load_clip(motion_clip)
    clip.checkpoint_hash = "0123456789abcdef"
    other = tmp_path / "other-model.npz"
    clip.save(other)
    _character()
    bpy.context.scene.fomm.clip_path = str(other)
    _refused(
        bpy.ops.fomm.bake_shape_keys,
        "the clip was extracted with another model than the one in the preferences: extract it again, or "
        "point the preferences at that model",
    )


def test_a_running_job_greys_out_the_other_operators(motion_clip, driving_video):
    """While a job runs (here a real worker registered as the running modal job), every operator that starts one
    is greyed out with the reason. (The modal operators' own 'another FOMM job is running' report needs a window:
    background Blender runs operators synchronously, one at a time.)"""
    _character()
    s = bpy.context.scene.fomm
    s.clip_path, s.video_path = str(motion_clip), str(driving_video)
    job = operators.WorkerJob({"kind": "probe"}, python=worker_python()).start()  # RUNNING until polled
    operators._ACTIVE["fomm.extract_motion"] = job
    try:
        for name in ("extract_motion", "calibrate", "bake_shape_keys", "bake_bones", "neural_preview", "check_worker"):
            with pytest.raises(RuntimeError, match=r"poll\(\) A FOMM job is running"):
                getattr(bpy.ops.fomm, name)()
        assert bpy.ops.fomm.cancel.poll()
    finally:
        operators._ACTIVE.pop("fomm.extract_motion", None)
        job.wait(timeout=120)
        job.close()
    assert not operators.job_running() and not bpy.ops.fomm.cancel.poll()


def test_worker_python_without_torch(monkeypatch):
    """Check Worker with a Python that has ml_core but no torch: the Blender 4.5 test venv (.venv-bpy45)."""
    python = REPO / ".venv-bpy45" / "bin" / "python"
    if not python.is_file():
        pytest.skip("no .venv-bpy45 here: no Python without torch to point the worker at")
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u, platform; print(u.find_spec('torch') is None, platform.python_version())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    no_torch, version = probe.stdout.split()
    if no_torch != "True":
        pytest.skip(f"{python} has torch")
    monkeypatch.setenv("FOMM_WORKER_PYTHON", str(python))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # ml_core from this checkout (the worker starts in the temp folder)
    _refused(
        bpy.ops.fomm.check_worker,
        f"the worker Python {python} has ml_core but no torch: install torch into it, or use the full build",
    )


@pytest.mark.parametrize("how", ["a file in the way", "a folder in the way of a render", "read-only"])
def test_calibration_cache_not_writable(how, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FOMM_CACHE_DIR", str(cache))
    _character()
    plan = pipeline.plan_calibration(bpy.context.scene, worker_settings())
    renders = plan.folder / "renders"
    if how == "a file in the way":
        cache.write_text("not a folder")
        expected = (
            f"cannot create the cache folder {renders} (Not a directory): pick a writable cache folder in the "
            "preferences"
        )
    elif how == "a folder in the way of a render":
        (renders / "neutral.png").mkdir(parents=True)
        expected = f"could not save the render {renders / 'neutral.png'}: check the cache folder is writable"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        cache.mkdir()
        cache.chmod(0o500)
        expected = (
            f"cannot create the cache folder {renders} (Permission denied): pick a writable cache folder in "
            "the preferences"
        )
    try:
        _refused(bpy.ops.fomm.calibrate, expected)
    finally:
        if cache.is_dir():
            cache.chmod(0o700)
    assert bpy.context.scene.fomm.calibration_path == ""
    assert not list(tmp_path.rglob("*.npz"))


def _interrupt_once_the_worker_runs(timeout: float = 120) -> threading.Thread:
    """Ctrl-C (KeyboardInterrupt in the main thread) half a second after a worker process of ours has started."""
    import _thread

    me = os.getpid()

    def worker_started() -> bool:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            if parent == me and b"ml_core" in cmd and b"worker" in cmd:
                return True
        return False

    def watch() -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if worker_started():
                time.sleep(0.5)  # inside run_job's loop by now; the worker is still loading torch
                _thread.interrupt_main()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_cancel_reports_nothing_changed(addon, driving_video, capfd):
    """Ctrl-C during Extract (background Blender; in the UI Esc or Cancel takes the same path): the operator is
    CANCELLED with the WARNING 'cancelled: nothing was changed', and nothing was: no clip, no partial file."""
    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc to see the worker process start")
    s = bpy.context.scene.fomm
    s.video_path = str(driving_video)
    s.crop_mode = "FULL"
    s.video_step = 3  # a clip no other test makes
    clips = addon / "cache" / "clips"
    had = sorted(p.name for p in clips.iterdir()) if clips.is_dir() else []
    before = _snapshot()
    capfd.readouterr()
    thread = _interrupt_once_the_worker_runs()
    assert bpy.ops.fomm.extract_motion() == {"CANCELLED"}
    thread.join()
    captured = capfd.readouterr()
    assert "cancelled: nothing was changed" in captured.out + captured.err
    assert "Traceback" not in captured.out + captured.err
    assert _snapshot() == before and s.clip_path == ""
    assert (sorted(p.name for p in clips.iterdir()) if clips.is_dir() else []) == had


def test_a_job_out_of_bounds_is_refused_before_a_worker_starts(driving_video):
    """The add-on builds its jobs with ml_core.jobs: a step the worker would refuse is refused here, in one line."""
    s = bpy.context.scene.fomm
    s.video_path = str(driving_video)
    s.video_step = 5000
    _refused(bpy.ops.fomm.extract_motion, "the extract job's option step must be between 1 and 1000, got 5000")


def test_the_jobs_the_addon_builds_parse_in_the_worker(driving_video):
    """Each job the pipeline builds is the JSON object of an ml_core.jobs dataclass, read back unchanged."""
    from ml_core.jobs import ExtractJob, ProbeJob, job_from_dict

    s = bpy.context.scene.fomm
    s.video_path = str(driving_video)
    s.crop_mode = "FULL"
    job = pipeline.extract_step(bpy.context.scene).job
    typed = job_from_dict(job)
    assert isinstance(typed, ExtractJob) and typed.to_dict() == job and typed.options.crop == "full"
    assert job_from_dict(pipeline.check_worker_step().job) == ProbeJob()
