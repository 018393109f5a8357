"""The pictures of docs/bake-from-examples.md, rendered headless through the add-on's own operators.

    .venv/bin/python -m tools.examples_pictures            # writes docs/img/examples_*.png

A synthetic performer (``tools.synth`` head 104) is rendered and extracted with the embedded model; a different
character (head 23, arbitrary key names) gets the reference video beside it (``fomm.show_reference``), 8 example
poses keyed at the frames an animator would pick (a neutral one, then the most different expressions, set to what
the performer does there), and ``fomm.bake_from_examples``. Pictures: the scene while posing an example, the scene on
a frame the bake solved, and every baked curve against the performer's ground truth.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _frame_both(scene, objects) -> None:
    """An orthographic front camera (looking +Y) framing ``objects`` side by side."""
    from mathutils import Euler, Vector

    pts = np.array([o.matrix_world @ Vector(c) for o in objects for c in o.bound_box])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    cam = scene.camera
    cam.data.type = "ORTHO"
    cam.data.ortho_scale = float(max(hi[0] - lo[0], 2 * (hi[2] - lo[2]))) * 1.1
    cam.location = ((lo[0] + hi[0]) / 2, lo[1] - 10.0, (lo[2] + hi[2]) / 2)
    cam.rotation_euler = Euler((np.pi / 2, 0.0, 0.0))
    cam.data.clip_end = 100.0


def _render(scene, frame: int, path: Path) -> None:
    import bpy

    from tools.synth.render import quiet_output

    scene.frame_set(frame)
    scene.render.filepath = str(path)
    with quiet_output():
        bpy.ops.render.render(write_still=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "examples_pictures")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--examples", type=int, default=8)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FOMM_WORKER_PYTHON", sys.executable)
    os.environ.setdefault("FOMM_CACHE_DIR", str(args.work / "cache"))

    import bpy

    import blender_fomm
    import ml_core
    from demo.__main__ import SEMANTIC, pearson, plot_curves, score_label
    from ml_core.examples import spread_frames
    from tools.synth import make_test_character, render_driving_clip
    from tools.synth.render import setup_scene

    video = args.work / "driving.mp4"
    gt = render_driving_clip(video, seed=104, n_frames=args.frames, size=128)
    clip = ml_core.extract(video, crop="full")
    clip_path = args.work / "clip.npz"
    clip.save(clip_path)

    bpy.ops.wm.read_homefile(use_empty=True)
    blender_fomm.register()
    scene = setup_scene(size=256, fps=25)
    scene.render.resolution_x, scene.render.resolution_y = 640, 320
    scene.display.shading.color_type = "TEXTURE"
    rig = make_test_character(23, naming="custom")
    s = scene.fomm
    s.target_object, s.clip_path, s.video_path, s.tolerance = rig.mesh, str(clip_path), str(video), 0.01
    s.examples_unexplained = "BAKE"  # listed with their errors in the panel; the doc discusses them
    assert bpy.ops.fomm.show_reference("EXEC_DEFAULT") == {"FINISHED"}, s.last_report
    plane = bpy.data.objects["FOMM Reference"]
    _frame_both(scene, [rig.mesh, plane])

    ids = [str(c) for c in gt["curve_ids"]]
    curves = np.asarray(gt["curves"], float)[:, [ids.index(sid) for sid in SEMANTIC]]
    rows = spread_frames(curves, args.examples)
    key = rig.mesh.data.shape_keys
    for f in rows:
        for i, sid in enumerate(SEMANTIC):
            if np.ptp(curves[rows, i]) <= 1e-9:
                continue  # the performer never moves it on these frames: not posed
            kb = key.key_blocks[rig.names[sid]]
            kb.value = float(curves[f, i])
            kb.keyframe_insert("value", frame=int(f) + 1)
    posed = int(rows[np.argmax(curves[rows, 0])]) + 1  # the example with the widest mouth
    _render(scene, posed, args.out / "examples_posing.png")

    assert bpy.ops.fomm.bake_from_examples("EXEC_DEFAULT") == {"FINISHED"}, s.last_report
    print(s.last_report)
    for c in s.example_channels:
        print(f"  {c.name}: each example predicted within {c.loo:.3f} by the others (spread {c.spread:.3f})")
    others = np.setdiff1d(np.arange(len(curves)), rows)
    solved = int(others[np.argmax(curves[others, 0])]) + 1  # a frame no example was posed on
    _render(scene, solved, args.out / "examples_solved.png")

    n = len(curves)
    baked = {sid: np.zeros(n) for sid in SEMANTIC}
    for t in range(n):
        scene.frame_set(t + 1)
        for sid in SEMANTIC:
            baked[sid][t] = key.key_blocks[rig.names[sid]].value
    truth = {sid: curves[:, i] for i, sid in enumerate(SEMANTIC)}
    labels = {sid: score_label(pearson(baked[sid], truth[sid]), baked[sid], truth[sid]) for sid in SEMANTIC}
    plot_curves(args.out / "examples_curves.png", np.arange(1, n + 1), truth, baked, labels)
    print(f"posed frame {posed}, solved frame {solved}; examples at frames {', '.join(str(r + 1) for r in rows)}")
    print("r: " + ", ".join(f"{k} {v}" for k, v in labels.items()))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
