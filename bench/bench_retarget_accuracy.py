"""Accuracy of the shape-key bake: a synthetic head's known performance, rendered, extracted and baked
back onto the same head through the add-on (calibration by rendering), scored against the ground truth.

    .venv/bin/python bench/bench_retarget_accuracy.py                       # the shipped default model
    .venv/bin/python bench/bench_retarget_accuracy.py --checkpoint CKPT --config CFG --seeds 101 102 103

For each seed: ``tools.synth.render_driving_clip`` renders head ``seed`` performing
``make_performance(seed)`` (ground-truth curves + head rotation); ``ml_core.extract`` makes the motion
clip (full frame); a fresh scene gets the same head (``make_test_character(seed, naming="custom")``:
arbitrary shape-key names, no convention), and ``bpy.ops.fomm.bake_shape_keys`` calibrates and bakes
(worker subprocess, defaults of the panel, no key reduction). Calibration uses the synthetic scene's
camera ("synth") and the add-on's automatic front view ("auto"). Scores: Pearson r between each baked
curve and its ground truth over all frames, per seed and pooled; head roll from the clip's similarity
alignment against the ground-truth roll (the rotation about the view axis). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from bench._common import addon_scene, baked_values, pearson, use_model  # noqa: E402
from ml_core.clip import MotionClip, load_clip  # noqa: E402
from ml_core.retarget import remove_head_motion  # noqa: E402
from tools.synth import CURVE_IDS, render_driving_clip  # noqa: E402


def bake_one(seed: int, clip_path: Path, camera_mode: str, fps: float, size: int) -> dict[str, np.ndarray]:
    scene, rig = addon_scene(seed, clip_path, fps, size)
    s = scene.fomm
    s.camera_object = scene.camera if camera_mode == "synth" else None
    ret = bpy.ops.fomm.bake_shape_keys()
    if ret != {"FINISHED"}:
        raise RuntimeError(f"bake failed: {ret}")
    from ml_core.clip import load_clip

    n = load_clip(clip_path).num_frames
    frames = np.arange(1, n + 1)
    return {sid: baked_values(rig.mesh, rig.names[sid], frames) for sid in CURVE_IDS}


def oracle_weights(seed: int, gt: dict, size: int, fps: float) -> dict[str, np.ndarray]:
    """The same calibration and solve fed with perfect keypoints: the synthetic landmarks (projected
    mesh points) of the driving clip, and of the character's neutral, per-key and turned/nodded poses
    seen by the synthetic camera (orbited as the add-on does). Measures the retargeting math alone
    (head-motion removal, calibration, neutral frame, bounded solve), no network involved."""
    from bench._common import oracle_calibration
    from ml_core.extraction import choose_reference_frame
    from ml_core.retarget import SolveOptions, solve_weights

    calib = oracle_calibration(seed, size, int(round(fps)))
    values = np.asarray(gt["landmarks"], dtype=np.float64)
    ref = choose_reference_frame(values.astype(np.float32))
    res = solve_weights(calib, values, None, ref, options=SolveOptions())  # the Bake panel's defaults
    return {sid: res.weights[:, i] for i, sid in enumerate(CURVE_IDS)}


def print_tables(per_seed: dict, seeds: list[int], cameras: list[str], out: Path) -> None:
    """The Markdown tables of RESULTS.md: r per shape key, seed and calibration camera; head motion r per seed.
    Writes each camera's pooled r to ``out/summary_CAMERA.json``."""
    for cam in ["oracle", *cameras]:
        title = "oracle keypoints (ground-truth landmarks; no network)" if cam == "oracle" else cam
        print(f"\nCalibration camera: {title}\n")
        print("| shape key | " + " | ".join(f"r seed {s}" for s in seeds) + " | r pooled |")
        print("|---|" + "---|" * (len(seeds) + 1))
        summary = {}
        for sid in CURVE_IDS:
            rs = [pearson(per_seed[s]["baked"][cam][sid], per_seed[s]["gt"][sid]) for s in seeds]
            pooled = pearson(
                np.concatenate([per_seed[s]["baked"][cam][sid] for s in seeds]),
                np.concatenate([per_seed[s]["gt"][sid] for s in seeds]),
            )
            summary[sid] = pooled
            print(f"| {sid} | " + " | ".join(f"{r:.3f}" for r in rs) + f" | {pooled:.3f} |")
        (out / f"summary_{cam}.json").write_text(json.dumps(summary, indent=1))
    print("\n| head motion (clip similarity vs ground truth) | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---|" + "---|" * len(seeds))
    print("| roll r (angle about the view axis) | " + " | ".join(f"{per_seed[s]['roll_r']:.3f}" for s in seeds) + " |")
    print("| roll r, oracle keypoints | " + " | ".join(f"{per_seed[s]['oracle_roll_r']:.3f}" for s in seeds) + " |")
    print("| yaw vs horizontal shift r | " + " | ".join(f"{per_seed[s]['yaw_vs_x_r']:.3f}" for s in seeds) + " |")


def examples_frames(gt: dict, count: int, picker: str) -> np.ndarray:
    """Frames an animator would pick (0-based). "spread": the most neutral, then each time the most different pose
    (``spread_frames``); "peaks": the most neutral, then the frame where each key peaks (``peak_frames``: what an
    animator picks by looking at the performer)."""
    from ml_core.examples import peak_frames, spread_frames

    pick = peak_frames if picker == "peaks" else spread_frames
    return pick(np.asarray(gt["curves"], dtype=float), count)


def examples_bake(
    seed: int, clip_path: Path, gt: dict, fps: float, size: int, rows: np.ndarray, prior: bool = True
) -> dict[str, np.ndarray]:
    """Bake from examples through the add-on: the same head built with arbitrary key names, the frames ``rows``
    keyed with the ground truth's values (``keyframe_insert``, as an animator would),
    ``bpy.ops.fomm.bake_from_examples`` (panel defaults: *Start from Calibration* on, which uses the calibration the
    "auto" bake cached, unless ``prior`` is False; channels the others cannot predict baked anyway; no key
    reduction)."""
    scene, rig = addon_scene(seed, clip_path, fps, size)
    s = scene.fomm
    s.examples_unexplained = "BAKE"
    s.examples_prior = prior
    curves = np.asarray(gt["curves"], dtype=float)
    ids = [str(c) for c in gt["curve_ids"]]
    key = rig.mesh.data.shape_keys
    for f in rows:
        for sid in CURVE_IDS:
            if np.ptp(curves[rows, ids.index(sid)]) <= 1e-9:
                continue  # the performer never moves it on these frames: an animator would not key it
            kb = key.key_blocks[rig.names[sid]]
            kb.value = float(curves[f, ids.index(sid)])
            kb.keyframe_insert("value", frame=int(f) + 1)
    if bpy.ops.fomm.bake_from_examples() != {"FINISHED"}:
        raise RuntimeError("bake from examples failed")
    print(f"  seed {seed}, frames {rows.tolist()}: {s.last_report}", flush=True)
    from ml_core.clip import load_clip

    frames = np.arange(1, load_clip(clip_path).num_frames + 1)
    out = {sid: np.zeros(len(frames)) for sid in CURVE_IDS}  # a key not keyed stays at 0
    for sid in CURVE_IDS:
        if np.ptp(curves[rows, ids.index(sid)]) > 1e-9:
            out[sid] = baked_values(rig.mesh, rig.names[sid], frames)
    return out


def examples_offline(
    values: np.ndarray, jacobians: np.ndarray | None, reference: int, gt: dict, rows: np.ndarray, kernels: str
) -> dict[str, np.ndarray]:
    """The same examples solved without Blender (``kernels``: "auto" as the add-on, or one kernel forced), from the
    clip's keypoints or from the ground-truth landmarks (the ceiling: no network)."""
    from ml_core.examples import example_features, solve_examples

    curves = np.asarray(gt["curves"], dtype=float)
    ids = [str(c) for c in gt["curve_ids"]]
    cols = [ids.index(sid) for sid in CURVE_IDS]
    blocks = example_features(values, jacobians, reference)
    y = curves[rows][:, cols]
    live = [i for i in range(len(cols)) if np.ptp(y[:, i]) > 1e-9]
    res = solve_examples(
        blocks,
        rows,
        y[:, live],
        [CURVE_IDS[i] for i in live],
        lower=[0.0] * len(live),
        upper=[1.0] * len(live),
        kernels=kernels,
    )
    out = {sid: np.full(len(curves), float(y[0, i])) for i, sid in enumerate(CURVE_IDS)}
    for j, i in enumerate(live):
        out[CURVE_IDS[i]] = res.values[:, j]
    return out


def print_examples_table(per_seed: dict, seeds: list[int], columns: list[str]) -> None:
    """Mean r per shape key (a constant ground truth left out) for each column; then per clip for the first."""

    def mean_r(col: str, sid: str) -> tuple[float, list[float]]:
        rs = []
        for s in seeds:
            g = per_seed[s]["gt"][sid]
            rs.append(pearson(per_seed[s]["baked"][col][sid], g) if np.ptp(g) > 0 else float("nan"))
        return float(np.nanmean(rs)), rs

    print("\n| shape key | " + " | ".join(f"mean r, {c}" for c in columns) + f" | per clip, {columns[0]} |")
    print("|---|" + "---|" * (len(columns) + 1))
    for sid in CURVE_IDS:
        cells = [f"{mean_r(c, sid)[0]:.3f}" for c in columns]
        per = ", ".join("-" if np.isnan(r) else f"{r:.2f}" for r in mean_r(columns[0], sid)[1])
        print(f"| {sid} | " + " | ".join(cells) + f" | {per} |")


def _driving(args: argparse.Namespace, seed: int, video: Path, clip_path: Path) -> tuple[dict, MotionClip]:
    """(ground truth, clip) of one performance: rendered unless ``--reuse`` finds it, extracted unless its clip is
    there. A kept clip is reused whatever ``--checkpoint`` says: score another model in another ``--out`` (copy the
    ``drive_*`` files there to keep the renders)."""
    from ml_core import extract

    if args.reuse and video.is_file() and video.with_suffix(".npz").is_file():
        gt = dict(np.load(video.with_suffix(".npz")))
    else:
        gt = render_driving_clip(video, seed=seed, n_frames=args.frames, size=args.size)
        clip_path.unlink(missing_ok=True)
    if clip_path.is_file():
        return gt, load_clip(clip_path)
    clip = extract(str(video), checkpoint=args.checkpoint, config=args.config, crop="full")
    clip.save(clip_path)
    return gt, clip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="model weights (default: the shipped default model)")
    ap.add_argument("--config", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--size", type=int, default=128, help="render size of the driving videos")
    ap.add_argument("--cameras", nargs="+", default=["synth", "auto"], choices=["synth", "auto"])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "accuracy")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the videos and clips of an earlier run in --out (a missing clip is extracted from its video)",
    )
    ap.add_argument("--examples", type=int, nargs="*", default=[8, 12], help="example counts (bake from examples)")
    ap.add_argument("--forced-kernels", action="store_true", help="also the examples solved with one kernel forced")
    args = ap.parse_args()

    from ml_core.extraction import choose_reference_frame

    args.out.mkdir(parents=True, exist_ok=True)
    use_model(args.out / "cache", args.checkpoint, args.config)

    t0 = time.perf_counter()
    per_seed: dict = {}
    for seed in args.seeds:
        video = args.out / f"drive_{seed}.mp4"
        clip_path = args.out / f"clip_{seed}.npz"
        gt, clip = _driving(args, seed, video, clip_path)
        curves = np.asarray(gt["curves"], dtype=float)
        ids = [str(c) for c in gt["curve_ids"]]
        fps = float(gt["fps"])
        head = np.asarray(gt["head_rotation"], dtype=float)  # yaw, pitch, roll
        _, _, motion = remove_head_motion(clip.values, None, clip.reference_frame)
        _, _, oracle_motion = remove_head_motion(np.asarray(gt["landmarks"], float), None, 0)
        entry = {
            "gt": {sid: curves[:, ids.index(sid)] for sid in CURVE_IDS},
            "roll_r": pearson(np.unwrap(motion.angle), head[:, 2]),
            "oracle_roll_r": pearson(np.unwrap(oracle_motion.angle), head[:, 2]),
            "yaw_vs_x_r": pearson(motion.translation[:, 0], head[:, 0]),
            "baked": {},
        }
        entry["baked"]["oracle"] = oracle_weights(seed, gt, args.size, fps)
        jac = clip.jacobians if clip.has_jacobians else None
        landmarks = np.asarray(gt["landmarks"], dtype=np.float64)
        lm_ref = int(choose_reference_frame(landmarks.astype(np.float32)))
        for cam in args.cameras:  # first: the examples start from the "auto" bake's calibration
            entry["baked"][cam] = bake_one(seed, clip_path, cam, fps, args.size)
        for n in args.examples:
            for picker in ("spread", "peaks"):
                rows = examples_frames(gt, n, picker)
                col = f"examples {n} {picker}"
                entry["baked"][col] = examples_bake(seed, clip_path, gt, fps, args.size, rows)
                entry["baked"][f"{col} no prior"] = examples_bake(seed, clip_path, gt, fps, args.size, rows, False)
                entry["baked"][f"{col} oracle"] = examples_offline(landmarks, None, lm_ref, gt, rows, "auto")
                for kernels in ("linear", "rbf") if args.forced_kernels else ():
                    entry["baked"][f"{col} {kernels}"] = examples_offline(
                        clip.values, jac, clip.reference_frame, gt, rows, kernels
                    )
        per_seed[seed] = entry

    model = args.checkpoint or "shipped default model"
    print(
        f"model: {model}; seeds {args.seeds}, {args.frames} frames at {args.size} px; {time.perf_counter() - t0:.0f} s"
    )
    if args.examples:
        kinds = ("", " no prior", " oracle", *((" linear", " rbf") if args.forced_kernels else ()))
        cols = [f"examples {n} {p}{k}" for n in args.examples for p in ("spread", "peaks") for k in kinds]
        print_examples_table(per_seed, args.seeds, [*cols, "oracle", *args.cameras])
    print_tables(per_seed, args.seeds, args.cameras, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
