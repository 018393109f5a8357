"""The procedural head in Blender: shape keys under every naming style, each visibly changes the render."""

import numpy as np
import pytest

from tools.synth.performance import CURVE_IDS

pytestmark = pytest.mark.bpy


@pytest.mark.parametrize("naming", ["semantic", "arkit", "custom"])
def test_shape_keys_under_each_naming(bpy_scene, naming):
    from tools.synth.head import ARKIT_NAMES, build_head

    rig = build_head(4, naming)
    kbs = rig.mesh.data.shape_keys.key_blocks
    assert kbs[0].name == "Basis"
    assert [kb.name for kb in kbs[1:]] == [rig.names[s] for s in CURVE_IDS]
    assert set(rig.names) == set(CURVE_IDS)
    if naming == "semantic":
        assert rig.names == {s: s for s in CURVE_IDS}
    elif naming == "arkit":
        assert rig.names == ARKIT_NAMES
    else:
        assert not set(rig.names.values()) & set(CURVE_IDS)
    basis = np.array([v.co for v in kbs[0].data])
    for kb in kbs[1:]:
        moved = np.linalg.norm(np.array([v.co for v in kb.data]) - basis, axis=1)
        assert moved.max() > 0.02, kb.name
        assert kb.relative_key.name == "Basis" and kb.slider_min == 0 and kb.slider_max == 1


def test_custom_names_depend_on_seed_and_dict_naming(bpy_scene):
    from tools.synth.head import build_head, shape_key_names

    assert shape_key_names("custom", 1) != shape_key_names("custom", 2)
    mapping = {s: f"K{i}" for i, s in enumerate(CURVE_IDS)}
    rig = build_head(0, mapping)
    assert rig.names == mapping and rig.mesh.data.shape_keys.key_blocks["K0"]
    with pytest.raises(ValueError):
        shape_key_names("weird")


def _render(scene, path):
    from tools.synth.render import _read_png, quiet_output

    scene.render.filepath = str(path)
    import bpy

    with quiet_output():
        bpy.ops.render.render(write_still=True)
    return _read_png(str(path)).astype(np.int16)


def test_every_key_visibly_changes_the_render(bpy_scene, tmp_path):
    from tools.synth.head import build_head, set_expression
    from tools.synth.render import setup_scene

    rig = build_head(2, "custom")  # a dark-skinned head: the low-contrast case
    scene = setup_scene(64)
    base = _render(scene, tmp_path / "base.png")
    for sid in CURVE_IDS:
        set_expression(rig, {s: 0.0 for s in CURVE_IDS} | {sid: 1.0})
        img = _render(scene, tmp_path / f"{sid}.png")
        changed = np.abs(img - base).max(axis=-1) > 15
        assert changed.sum() >= 12, (sid, changed.sum())
        # the change stays on the face (not a global flicker)
        assert changed.sum() < 0.1 * changed.size, sid


def test_heads_vary_with_seed():
    from tools.synth.geometry import draw_head_params

    a, b = draw_head_params(1), draw_head_params(2)
    assert a.colors["skin"] != b.colors["skin"] and a.rx != b.rx
    styles = {draw_head_params(s).hair for s in range(40)}
    assert styles == {"short", "bob", "cap", "bald"}


def test_armature_drives_the_head(bpy_scene):
    from tools.synth.head import build_head, set_head_pose
    from tools.synth.render import landmark_world

    rig = build_head(5, "arkit", with_armature=True, bone_name="Head Bone.001")
    assert rig.armature is not None and rig.bone_name == "Head Bone.001"
    assert rig.mesh.parent == rig.armature
    assert rig.mesh.modifiers[0].type == "ARMATURE"
    before = landmark_world(rig)
    set_head_pose(rig, (0.3, 0.0, 0.0), (0.0, 0.0, 0.0))
    after = landmark_world(rig)
    # yaw about the vertical axis through the pivot: heights kept, the face turns toward +X
    np.testing.assert_allclose(after[:, 2], before[:, 2], atol=1e-4)
    nose = list(rig.landmark_names).index("nose_tip")
    assert after[nose, 0] > before[nose, 0] + 0.1
    # same world motion as the object-level rig
    import bpy

    from tools.synth.render import reset_scene

    reset_scene()
    rig2 = build_head(5, "arkit")
    set_head_pose(rig2, (0.3, 0.0, 0.0), (0.0, 0.0, 0.0))
    bpy.context.view_layer.update()
    np.testing.assert_allclose(landmark_world(rig2), after, atol=1e-4)
