"""Head rotation in 3-D: a synthetic head turning, nodding and tilting while it talks and blinks, rendered,
extracted and baked back onto the same head's bone through the add-on; the bone's world rotation is scored
against the ground truth.

    .venv/bin/python bench/bench_head_pose.py                # render (cached), extract (cached), bake, score
    .venv/bin/python bench/bench_head_pose.py --render-only  # only the cached performance and clip

The performance is ``make_performance(seed)`` with its head rotation rescaled so that yaw, pitch and roll
peak at exactly +/-25, +/-12 and +/-10 degrees; it is rendered at 128 px by ``tools.synth`` (Workbench) and
extracted with the shipped default model (full frame). The target is the same head built fresh with ARKit
shape-key names and a head bone; ``bpy.ops.fomm.bake_bones`` (head mode) calibrates the target by rendering
(the synthetic camera, or the add-on's automatic front view) and bakes the bone. Per frame, the bone's world
rotation relative to its rest is decomposed into (yaw, pitch, roll) the way ``tools.synth`` composes them
(``Rz(yaw) Rx(pitch) Ry(roll)``); each axis's constant offset (the zero of monocular motion is the reference
frame) is removed before the mean absolute error. A second row scores the estimate without the target's
calibration (the model's own head-pose calibration), and a third feeds the same math the ground-truth
landmarks (no network). Prints a Markdown table; the CSV export is checked to carry the same angles.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

LIMITS_DEG = (25.0, 12.0, 10.0)  # yaw, pitch, roll


def performance(seed: int, frames: int, fps: int) -> dict:
    from tools.synth import make_performance

    perf = make_performance(seed, frames, fps)
    rot = np.asarray(perf["head_rotation"], dtype=np.float64)
    for i, lim in enumerate(LIMITS_DEG):
        peak = np.abs(rot[:, i]).max()
        rot[:, i] *= np.radians(lim) / peak
    perf["head_rotation"] = rot.astype(np.float32)
    return perf


def render(out: Path, seed: int, frames: int, fps: int, size: int) -> tuple[Path, Path]:
    """The driving video and its motion clip (cached in ``out``)."""
    video = out / f"drive_{seed}_{frames}.mp4"
    clip_path = out / f"clip_{seed}_{frames}.npz"
    if not video.is_file():
        from tools.synth import build_head
        from tools.synth import render as R

        R.reset_scene()
        rig = build_head(seed, "semantic")
        rig.identity = f"driving{seed}"
        R.render_clip(rig, performance(seed, frames, fps), video, size=size, look_seed=seed)
    if not clip_path.is_file():
        from ml_core import extract

        extract(str(video), crop="full").save(clip_path)
    return video, clip_path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "headpose")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    video, clip_path = render(args.out, args.seed, args.frames, args.fps, args.size)
    print(f"performance: {video} ({time.perf_counter() - t0:.0f} s)")
    if args.render_only:
        return 0
    os.environ["FOMM_CACHE_DIR"] = str(args.out / "cache")
    for key in ("FOMM_CHECKPOINT", "FOMM_CONFIG"):
        os.environ.pop(key, None)
    gt = dict(np.load(video.with_suffix(".npz")))
    truth = np.asarray(gt["head_rotation"], dtype=np.float64)
    rows = []
    for cam in ("synth", "auto"):
        est, csv_angles, line = bake(args, clip_path, cam)
        rows.append((f"add-on bake, target calibrated ({cam} camera)", score(est, truth), line))
        csv_err = float(np.abs(csv_angles - est).max())
        print(f"{cam}: {line}; CSV head angles vs bone: max |diff| {np.degrees(csv_err):.4f} deg")
    from ml_core.clip import load_clip
    from ml_core.headpose import estimate_head_pose, model_head_calibration

    clip = load_clip(clip_path)
    model_cal = model_head_calibration(clip.checkpoint_hash)
    jac = clip.jacobians if clip.has_jacobians else None
    if model_cal is not None:
        hp = estimate_head_pose(clip.values, jac, clip.reference_frame, model_cal, source="model")
        rows.append(("no target calibration: the model's head-pose calibration (ml_core)", score(hp.angles, truth), ""))
    hp = estimate_head_pose(clip.values, jac, clip.reference_frame, None)
    rows.append(("in-plane similarity only (before this work)", score(hp.angles, truth), ""))
    rows.append(("oracle: ground-truth landmarks, oracle calibration (no network)", oracle(args, gt), ""))
    print(
        f"\nseed {args.seed}, {args.frames} frames at {args.fps} fps, {args.size} px, shipped default model; "
        f"{time.perf_counter() - t0:.0f} s; {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Blender {bpy.app.version_string}\n"
    )
    print("| head rotation | yaw MAE | pitch MAE | roll MAE | yaw r | pitch r | roll r |")
    print("|---|---|---|---|---|---|---|")
    for name, sc, _ in rows:
        print(
            f"| {name} | "
            + " | ".join(f"{v:.2f} deg" for v in sc["mae"])
            + " | "
            + " | ".join(f"{v:.3f}" for v in sc["r"])
            + " |"
        )
    (args.out / "summary.json").write_text(json.dumps({n: sc for n, sc, _ in rows}, indent=1))
    return 0


def score(est: np.ndarray, truth: np.ndarray) -> dict:
    """Per axis: mean absolute error (degrees) once the constant offset is removed, and Pearson r."""
    mae, r = [], []
    for i in range(3):
        d = est[:, i] - truth[:, i]
        mae.append(float(np.degrees(np.abs(d - d.mean()).mean())))
        r.append(float(np.corrcoef(est[:, i], truth[:, i])[0, 1]) if np.std(est[:, i]) > 1e-9 else float("nan"))
    return {"mae": mae, "r": r}


def bake(args, clip_path: Path, cam: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Bake the head bone through the add-on; (bone world rotation as yaw/pitch/roll [T,3], the CSV's head
    columns [T,3], the report line)."""
    import addon_utils

    from ml_core.headpose import matrix_to_euler
    from tools.synth import make_test_character
    from tools.synth.render import setup_scene

    bpy.ops.wm.read_homefile(use_empty=True)
    addon_utils.enable("blender_fomm", default_set=True, handle_error=None)
    scene = setup_scene(size=args.size, fps=args.fps)
    rig = make_test_character(args.seed, naming="arkit", with_armature=True)
    s = scene.fomm
    s.target_object = rig.mesh
    s.armature_object = rig.armature
    s.head_bone = rig.bone_name
    s.bone_mode = "HEAD"
    s.clip_path = str(clip_path)
    s.bone_tolerance = 0.0
    s.start_frame = 1
    s.camera_object = scene.camera if cam == "synth" else None
    if bpy.ops.fomm.bake_bones() != {"FINISHED"}:
        raise RuntimeError(f"bake failed: {s.last_report}")
    line = s.last_report
    arm = rig.armature
    pb = arm.pose.bones[rig.bone_name]
    rest = np.array((arm.matrix_world @ pb.bone.matrix_local).to_3x3().normalized())
    out = []
    for f in range(1, args.frames + 1):
        scene.frame_set(f)
        world = np.array((arm.matrix_world @ pb.matrix).to_3x3().normalized())
        out.append(matrix_to_euler(world @ rest.T))
    # the Live Link Face CSV of the same take (shape keys baked too) carries the same angles
    path = args.out / f"take_{cam}.csv"
    if bpy.ops.fomm.bake_shape_keys() != {"FINISHED"}:
        raise RuntimeError(f"shape-key bake failed: {s.last_report}")
    bpy.ops.fomm.arkit_fill()
    if bpy.ops.fomm.export_livelink_csv(filepath=str(path)) != {"FINISHED"}:
        raise RuntimeError(f"CSV export failed: {s.last_report}")
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head = rows[0]
    cols = [head.index(c) for c in ("HeadYaw", "HeadPitch", "HeadRoll")]
    csv_angles = np.array([[float(r[c]) for c in cols] for r in rows[1:]])
    csv_angles = livelink_to_view(csv_angles)
    return np.array(out), csv_angles, line


def livelink_to_view(angles: np.ndarray) -> np.ndarray:
    from ml_core.livelink import HEAD_SIGNS

    return angles * np.asarray(HEAD_SIGNS)


def oracle(args, gt: dict) -> dict:
    """The same estimate fed with perfect keypoints: the driving clip's ground-truth landmarks, and an
    oracle calibration (the same head's projected landmarks, neutral, per key and orbited as the add-on does)."""
    from bench._common import oracle_calibration
    from ml_core.extraction import choose_reference_frame
    from ml_core.headpose import estimate_head_pose

    calib = oracle_calibration(args.seed, args.size, args.fps)
    values = np.asarray(gt["landmarks"], dtype=np.float64)
    ref = choose_reference_frame(values.astype(np.float32))
    hp = estimate_head_pose(values, None, ref, calib)
    return score(hp.angles, np.asarray(gt["head_rotation"], dtype=np.float64))


if __name__ == "__main__":
    raise SystemExit(main())
