"""Landmarks are exact: projected mesh points agree with the rendered image to a fraction of a pixel."""

import numpy as np
import pytest

from tools.synth.performance import CURVE_IDS

pytestmark = pytest.mark.bpy

SIZE = 128
BLUE, RED = (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)


def _perf(rotation, translation, expr=None):
    curves = np.zeros((2, len(CURVE_IDS)), np.float32)
    for sid, v in (expr or {}).items():
        curves[:, CURVE_IDS.index(sid)] = v
    return {
        "curves": curves,
        "curve_ids": list(CURVE_IDS),
        "fps": 25.0,
        "head_rotation": np.array([rotation] * 2, np.float32),
        "head_translation": np.array([translation] * 2, np.float32),
    }


def _paint(rig, part, rgb):
    for slot in rig.mesh.material_slots:
        if slot.material.name.endswith("_" + part):
            slot.material.diffuse_color = (*rgb, 1.0)


def _to_px(xy):
    return (np.asarray(xy) + 1.0) / 2.0 * (SIZE - 1)


@pytest.mark.parametrize("armature", [False, True])
@pytest.mark.parametrize(
    ("pose", "aa", "tol"),
    [
        # without anti-aliasing a frontal pupil (a ~6 px disc) pins the convention to a few hundredths of a pixel
        (((0, 0, 0), (0, 0, 0)), "OFF", 0.1),
        # turned, tilted and moved; Workbench's multi-sample jitter shifts the image by up to ~0.2 px
        (((0.35, 0.12, -0.15), (0.05, 0.03, -0.04)), "8", 0.4),
    ],
)
def test_pupil_landmarks_hit_the_rendered_pupils(bpy_scene, armature, pose, aa, tol):
    from tools.synth.head import build_head
    from tools.synth.render import render_frames

    rig = build_head(3, "custom", with_armature=armature)
    _paint(rig, "pupil", BLUE)
    _paint(rig, "highlight", BLUE)
    _paint(rig, "iris", RED)
    frames, lm, _ = render_frames(rig, _perf(*pose), size=SIZE, look_seed=None, light="FLAT", aa=aa)
    assert frames.shape == (2, SIZE, SIZE, 3) and lm.shape == (2, len(rig.landmark_names), 2)
    img = frames[1].astype(np.float64) / 255.0
    blue = np.clip(img[..., 2] - np.maximum(img[..., 0], img[..., 1]), 0, 1)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    for side in ("L", "R"):
        px, py = _to_px(lm[1, rig.landmark_names.index(f"pupil_{side}")])
        win = (np.abs(xs - px) < 6) & (np.abs(ys - py) < 6)
        w = blue * win
        assert w.sum() > 3, f"no pupil near the {side} landmark"
        cx, cy = (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()
        assert abs(cx - px) < tol and abs(cy - py) < tol, (side, (cx, cy), (px, py))


def test_open_mouth_between_the_lip_landmarks(bpy_scene):
    from tools.synth.head import build_head
    from tools.synth.render import render_frames

    rig = build_head(6, "semantic")
    frames, lm, _ = render_frames(
        rig, _perf((0.2, 0.0, 0.05), (0, 0, 0), {"jaw_open": 1.0}), size=SIZE, look_seed=None, light="FLAT", aa="8"
    )
    mouth = np.round(np.array(rig.params.colors["mouth"]) ** (1 / 2.2) * 255)
    names = list(rig.landmark_names)
    up, lo = lm[1, names.index("lip_upper_inner")], lm[1, names.index("lip_lower_inner")]
    assert lo[1] - up[1] > 4 * 2 / SIZE  # the mouth is open by several pixels, lower lip below
    px, py = np.round(_to_px((up + lo) / 2)).astype(int)
    assert np.abs(frames[1][py, px].astype(float) - mouth).max() < 30
    # the chin landmark is below the mouth, the brows above the eyes, left is on the image right
    xy = {n: lm[1, i] for i, n in enumerate(names)}
    assert xy["chin"][1] > xy["lip_lower_outer"][1] > xy["nose_tip"][1] > xy["pupil_L"][1] > xy["brow_L"][1]
    assert xy["mouth_corner_L"][0] > xy["mouth_corner_R"][0]
    assert np.all(np.abs(lm) < 1)


def test_visibility_flags_follow_the_head_turn(bpy_scene):
    from tools.synth.head import build_head
    from tools.synth.render import render_frames

    rig = build_head(0, "semantic")
    perf = _perf((0.0, 0.0, 0.0), (0, 0, 0))
    perf["head_rotation"][1] = (0.7, 0.0, 0.0)  # second frame: face turned far toward image right
    _, _, look = render_frames(rig, perf, size=64, look_seed=None, aa="OFF")
    vis = look["landmark_visible"]
    names = list(rig.landmark_names)
    assert vis.shape == (2, len(names)) and vis[0].all()
    assert not vis[1, names.index("jaw_L")] and vis[1, names.index("jaw_R")]
    assert vis[1, names.index("pupil_R")] and vis[1, names.index("nose_tip")]
