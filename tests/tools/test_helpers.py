"""make_test_character / render_driving_clip, the entry points other parts of the project use."""

import numpy as np
import pytest

from tools.synth.performance import CURVE_IDS

pytestmark = pytest.mark.bpy


def test_make_test_character_in_current_scene(bpy_scene):
    import bpy

    from tools.synth import make_test_character

    existing = bpy.data.objects.new("Existing", None)
    bpy.context.scene.collection.objects.link(existing)
    rig = make_test_character(seed=9)
    assert "Existing" in bpy.context.scene.objects  # the scene is not cleared
    assert rig.armature is None and rig.mesh.name in bpy.context.scene.objects
    keys = rig.mesh.data.shape_keys.key_blocks
    assert all(rig.names[s] in keys for s in CURVE_IDS)
    assert not set(rig.names.values()) & set(CURVE_IDS)  # "custom" names carry no convention
    rig2 = make_test_character(seed=10, naming="arkit", with_armature=True)
    assert rig2.armature is not None and rig2.bone_name in rig2.armature.data.bones
    assert rig2.names["jaw_open"] == "jawOpen"


def test_render_driving_clip(bpy_scene, tmp_path):
    pytest.importorskip("cv2")
    from tools.synth import render_driving_clip
    from tools.synth.video import read_video

    path = tmp_path / "drive.mp4"
    gt = render_driving_clip(path, seed=2, n_frames=6, size=64)
    frames = read_video(path)
    assert frames.shape == (6, 64, 64, 3)
    saved = np.load(path.with_suffix(".npz"))
    assert list(saved["curve_ids"]) == list(CURVE_IDS)
    np.testing.assert_array_equal(saved["curves"], gt["curves"])
    assert saved["landmarks"].shape == (6, len(saved["landmark_names"]), 2)
    assert frames.mean() > 20  # a real picture, not black


def test_frames_without_opencv_path(bpy_scene):
    # render_frames needs no OpenCV (Blender 4.5 venv): frames come back as arrays
    from tools.synth.head import build_head
    from tools.synth.performance import make_performance
    from tools.synth.render import render_frames

    rig = build_head(1, "semantic", with_armature=True)
    frames, lm, look = render_frames(rig, make_performance(1, 4), size=48, look_seed=1)
    assert frames.shape == (4, 48, 48, 3) and frames.dtype == np.uint8
    assert lm.shape == (4, len(rig.landmark_names), 2) and "studio_light" in look
    assert frames.std() > 10


def test_progress_and_cancel(bpy_scene):
    from tools.synth.head import build_head
    from tools.synth.performance import make_performance
    from tools.synth.render import render_frames

    rig = build_head(1, "semantic")
    calls = []
    frames, _, _ = render_frames(
        rig, make_performance(1, 3), size=32, look_seed=None, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(1, 3), (2, 3), (3, 3)] and frames.shape == (3, 32, 32, 3)
    with pytest.raises(KeyboardInterrupt):
        render_frames(
            rig,
            make_performance(1, 3),
            size=32,
            look_seed=None,
            cancel=lambda: len(calls) > 3,
            progress=lambda d, t: calls.append((d, t)),
        )
    assert len(calls) == 4  # stopped after the first frame of the second run
