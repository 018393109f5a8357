"""Targets where a bake would not persist or not take effect are refused (issue 16, items 3 and 9), and a
variable-frame-rate clip bakes each sample at its presentation time (item 7)."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from bfomm_helpers import make_head, make_rig

from blender_fomm.bones import bake_head_bone
from blender_fomm.shapekeys import bake_weights, clip_to_frames, shape_key_path
from ml_core.errors import FommError


def _library(tmp_path) -> str:
    """A .blend holding a head mesh with shape keys (and an action on them), written from this session."""
    obj = make_head("LibHead")
    bake_weights(obj, ["jaw open"], np.arange(1, 5), np.full((4, 1), 0.25))
    rig = make_rig("LibRig")
    path = str(tmp_path / "character.blend")
    bpy.data.libraries.write(path, {obj, rig, obj.data, obj.data.shape_keys, rig.data}, fake_user=True)
    for o in (obj, rig):
        bpy.data.objects.remove(o)
    return path


def _link(path: str, name: str) -> bpy.types.Object:
    with bpy.data.libraries.load(path, link=True) as (src, dst):
        dst.objects = [name]
    obj = dst.objects[0]
    bpy.context.scene.collection.objects.link(obj)
    return obj


def test_linked_mesh_is_refused_and_left_untouched(tmp_path):
    """It used to report FINISHED, replace the library's action for the session, and lose the bake on reload."""
    obj = _link(_library(tmp_path), "LibHead")
    key = obj.data.shape_keys
    before = key.animation_data.action
    with pytest.raises(FommError, match=r"'LibHead' is linked from character\.blend: a bake onto it would be lost"):
        bake_weights(obj, ["jaw open"], np.arange(1, 11), np.full((10, 1), 0.5))
    assert key.animation_data.action == before


def test_object_only_override_is_refused(tmp_path):
    """An override of the object alone leaves its mesh and Key linked: the bake would still be lost."""
    linked = _link(_library(tmp_path), "LibHead")
    obj = linked.override_create()
    assert obj.override_library is not None and obj.data.library is not None
    with pytest.raises(FommError, match=r"the mesh of 'LibHead' are linked from character\.blend \(only the object"):
        bake_weights(obj, ["jaw open"], np.arange(1, 11), np.full((10, 1), 0.5))


def test_linked_armature_is_refused(tmp_path):
    from ml_core.retarget import HeadMotion

    rig = _link(_library(tmp_path), "LibRig")
    head = HeadMotion(
        scale=np.ones(3),
        angle=np.zeros(3),
        rotation=np.broadcast_to(np.eye(2), (3, 2, 2)).copy(),
        translation=np.zeros((3, 2)),
    )
    with pytest.raises(FommError, match=r"'LibRig' is linked from character\.blend"):
        bake_head_bone(rig, "Head", np.arange(1, 4), head)


def test_driven_shape_key_is_refused():
    """A driver overrides the baked curve: the bake used to finish and change nothing."""
    obj = make_head()
    fc = obj.data.shape_keys.driver_add(shape_key_path("blink"))
    fc.driver.expression = "0.3"
    with pytest.raises(FommError, match=r"shape key 'blink' of 'Head' is driven by a driver"):
        bake_weights(obj, ["jaw open", "blink"], np.arange(1, 5), np.full((4, 2), 0.5))
    assert obj.data.shape_keys.animation_data.action is None
    bake_weights(obj, ["jaw open"], np.arange(1, 5), np.full((4, 1), 0.5))  # the undriven key bakes
    fc.mute = True  # a muted driver no longer wins
    bake_weights(obj, ["blink"], np.arange(1, 5), np.full((4, 1), 0.5))


def test_absolute_shape_keys_are_refused():
    """With Relative off a bake wrote key values that nothing reads."""
    obj = make_head()
    obj.data.shape_keys.use_relative = False
    with pytest.raises(FommError, match=r"'Head' uses absolute shape keys \(Relative is off"):
        bake_weights(obj, ["jaw open"], np.arange(1, 5), np.full((4, 1), 0.5))
    assert obj.data.shape_keys.animation_data is None or obj.data.shape_keys.animation_data.action is None


def test_variable_frame_rate_samples_bake_at_their_times():
    """Item 7: sample 3, presented at 1.0 s (a phone's VFR), lands at scene frame 25 at 24 fps, not at 3/fps."""
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    times = np.array([0.0, 0.1, 0.15, 1.0, 2.0])
    values = np.array([[0.0], [0.1], [0.15], [1.0], [2.0]])  # value = time: the bake must reproduce it
    frames, baked = clip_to_frames(times, values, scene, 1)
    assert frames[0] == 1 and frames[-1] == 49
    np.testing.assert_allclose(baked[:, 0], (frames - 1) / 24.0, atol=1e-9)
    assert baked[frames.tolist().index(25), 0] == pytest.approx(1.0)
