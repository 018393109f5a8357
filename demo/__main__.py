"""``make demo``: the whole product, headless, on the embedded default model.

1. a driving performance of one synthetic character is rendered (ground truth saved beside it);
2. motion is extracted with the embedded model (keypoints + Jacobians -> motion clip);
3. a *different* character (arbitrary shape-key names, its own armature) gets the clip baked through the add-on's
   operators: shape keys (calibration by rendering), control bones, the head bone; keyframes reduced;
4. the neural preview plane is built beside it;
5. outputs in ``demo/out/``: ``demo.blend``, ``review.mp4`` (driving | neural preview | baked character rendered),
   ``curves.png`` (baked against ground-truth curves), ``summary.json``, ``character.png`` (the preview's source
   still); a summary is printed;
6. the same character is also baked from examples (8 frames posed as the performer does them: a neutral one and
   the most different expressions) as an NLA strip beside the calibrated bake; both are scored side by side
   (``curves_examples.png``, ``summary.json``'s ``examples``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "demo" / "out"
DRIVER_SEED = int(os.environ.get("FOMM_DEMO_DRIVER", 104))  # a driver not used to tune the solver
TARGET_SEED = 23
AUTO_NEUTRAL = os.environ.get("FOMM_DEMO_AUTO_NEUTRAL", "0").strip().lower() in ("1", "true", "yes", "on")
EXAMPLES = 8  # frames an animator poses for Bake from Examples
SEMANTIC = ("jaw_open", "smile_L", "smile_R", "blink_L", "blink_R", "brow_raise_L", "brow_raise_R", "pucker")


def _stage(bar, text: str) -> None:
    bar.set_description_str(text)
    bar.refresh()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else float("nan")


def score_label(r: float, baked: np.ndarray, truth: np.ndarray) -> str:
    """Pearson r for people; a curve that does not move has none, and says which one it is."""
    if np.ptp(truth) < 1e-9:
        return f"n/a (truth still, baked peak {float(np.max(np.abs(baked))):.2f})"
    if np.ptp(baked) < 1e-9:
        return "n/a (baked flat)"
    return f"{r:.2f}"


def plot_curves(
    path: Path, frames: np.ndarray, truth: dict[str, np.ndarray], baked: dict[str, np.ndarray], labels: dict[str, str]
) -> None:
    """One row per shape key: ground truth (grey) and the baked curve (colour), with Pearson r."""
    import cv2

    from ml_core.fileio import atomic_path

    names = list(truth)
    row_h, width, left = 90, 900, 150
    img = np.full((row_h * len(names) + 40, width, 3), 255, np.uint8)
    cv2.putText(
        img,
        "baked (colour) vs ground truth (grey), per shape key",
        (10, 25),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.6,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    n = len(frames)
    colours = [
        (200, 80, 30),
        (40, 150, 40),
        (30, 120, 200),
        (160, 40, 160),
        (20, 160, 160),
        (90, 90, 200),
        (200, 140, 20),
        (60, 60, 60),
    ]
    for i, name in enumerate(names):
        top = 40 + i * row_h
        cv2.rectangle(img, (left, top + 5), (width - 10, top + row_h - 5), (220, 220, 220), 1)
        r, _, why = labels[name].partition(" (")
        lines = [name, f"r={r}", *(why.rstrip(")").split(", ") if why else [])]
        for j, text in enumerate(lines):  # the left column, one short line each
            y = top + row_h // 2 - 8 * (len(lines) - 1) + 16 * j + 5
            cv2.putText(img, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        xs = left + (np.arange(n) / max(n - 1, 1)) * (width - 10 - left)
        for series, colour, thick in ((truth[name], (160, 160, 160), 2), (baked[name], colours[i % 8], 1)):
            ys = top + row_h - 8 - np.clip(series, 0, 1) * (row_h - 16)
            pts = np.stack([xs, ys], axis=1).round().astype(np.int32)
            cv2.polylines(img, [pts], False, colour, thick, cv2.LINE_AA)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise RuntimeError(f"could not write {path}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="length of the driving performance (25 fps)")
    parser.add_argument("--size", type=int, default=256, help="driving video size in pixels")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--auto-neutral",
        action=argparse.BooleanOptionalAction,
        default=AUTO_NEUTRAL,
        help="search the clip for its most neutral frame (the panel's 'Find Neutral Frame') instead "
        "of using frame 0 as the reference (default: env FOMM_DEMO_AUTO_NEUTRAL, else off)",
    )
    parser.add_argument(
        "--examples", type=int, default=EXAMPLES, help="frames posed for Bake from Examples (0: skip that bake)"
    )
    return parser.parse_args(argv)


def render_driving(out: Path, frames: int, size: int) -> tuple[Path, dict]:
    """1. The driving performance (character A), with its ground truth."""
    from tools.synth import helpers as synth

    video = out / "driving.mp4"
    synth.render_driving_clip(video, seed=DRIVER_SEED, n_frames=frames, size=size)
    return video, dict(np.load(video.with_suffix(".npz")))


def extract_clip(video: Path, out: Path):
    """2. Extraction with the embedded model: (clip, its path, seconds, the model bundle)."""
    import ml_core

    bundle = ml_core.load_model()
    t0 = time.perf_counter()
    clip = ml_core.extract(video, model=bundle, crop="full", reference_frame=0)
    seconds = time.perf_counter() - t0
    clip_path = out / "driving_clip.npz"
    clip.save(clip_path)
    return clip, clip_path, seconds, bundle


def build_target(video: Path, clip_path: Path, n_samples: int, auto_neutral: bool):
    """3. A different character in a fresh scene, the panel filled in as an animator would: (scene, rig)."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    import blender_fomm
    from blender_fomm import pipeline
    from ml_core.retarget import SolveOptions
    from tools.synth import helpers as synth
    from tools.synth import render as synth_render

    blender_fomm.register()
    scene = bpy.context.scene
    synth_render.setup_scene(size=256, fps=25)
    rig = synth.make_test_character(TARGET_SEED, naming="custom", with_armature=True)
    scene.frame_start, scene.frame_end = 1, n_samples
    s = scene.fomm
    s.video_path = str(video)
    s.clip_path = str(clip_path)
    s.target_object = rig.mesh
    s.armature_object = rig.armature
    s.head_bone = rig.bone_name
    s.start_frame = 1
    s.tolerance = 0.01
    # The performance starts on a neutral face and the clip's reference is frame 0 (as an animator would set it in
    # the Source panel), so the solve uses that reference instead of searching the clip for a neutral frame (the
    # panel's default, --auto-neutral here: jaw r 0.90 against 0.96 from frame 0 for driver 104; bench/RESULTS.md).
    pipeline.set_solve_options(s, SolveOptions(auto_neutral=bool(auto_neutral)))
    return scene, rig


def run_operator(name: str, scene) -> str:
    """Run ``bpy.ops.fomm.NAME`` to completion; its report line, or exit with an error."""
    import bpy

    if "FINISHED" not in getattr(bpy.ops.fomm, name)("EXEC_DEFAULT"):
        raise SystemExit(f"error: {name} did not finish: {scene.fomm.last_report}")
    return scene.fomm.last_report


def bake_bones(scene) -> list[str]:
    reports = []
    for mode in ("CONTROL", "HEAD"):
        scene.fomm.bone_mode = mode
        reports.append(run_operator("bake_bones", scene))
    return reports


def examples_action(rig, truth: dict, count: int):
    """The animator's poses for Bake from Examples: ``count`` frames of the performance (the most neutral one, then
    each time the most different expression: extremes and a neutral), each key set to what the performer does
    there, in an action of the user's (picked in the panel; the calibrated bake stays the Key's active action)."""
    import bpy

    from blender_fomm.anim import Curve, ensure_channelbag, write_fcurve
    from blender_fomm.shapekeys import shape_key_path
    from ml_core.examples import spread_frames

    ids = [str(x) for x in truth["curve_ids"]]
    curves = np.asarray(truth["curves"], np.float64)[:, [ids.index(sid) for sid in SEMANTIC]]
    rows = spread_frames(curves, count)
    key = rig.mesh.data.shape_keys
    action = bpy.data.actions.new("Poses")
    slot = action.slots.new(id_type="KEY", name=key.name)
    bag = ensure_channelbag(action, slot)
    for i, sid in enumerate(SEMANTIC):
        if np.ptp(curves[rows, i]) > 1e-9:  # a key the performer never moves there is not posed
            curve = Curve(shape_key_path(rig.names[sid]), 0, rows + 1.0, curves[rows, i])
            write_fcurve(bag, curve, curve.frames, curve.values)
    return action, rows


def bake_from_examples(scene, rig, truth: dict, count: int, n: int) -> tuple[str, dict[str, np.ndarray], list]:
    """Bake from Examples as an NLA strip beside the calibrated bake: (report, baked curves, example frames)."""
    from blender_fomm.anim import action_fcurves, own_action
    from blender_fomm.examples import KIND
    from blender_fomm.shapekeys import shape_key_path

    action, rows = examples_action(rig, truth, count)
    s = scene.fomm
    s.examples_action = action
    s.examples_unexplained = "BAKE"
    s.placement = "NLA"
    report = run_operator("bake_from_examples", scene)
    s.placement = "ACTIVE"
    fcurves = {fc.data_path: fc for fc in action_fcurves(own_action(rig.mesh.data.shape_keys, KIND))}
    baked = {}
    for sid in SEMANTIC:  # a key not posed stays at 0
        fc = fcurves.get(shape_key_path(rig.names[sid]))
        baked[sid] = np.array([fc.evaluate(float(f)) if fc else 0.0 for f in range(1, n + 1)])
    return report, baked, [int(r) + 1 for r in rows]


def neural_preview(scene, out: Path) -> tuple[str, float]:
    """4. The neural preview plane; its source still is copied to ``character.png``."""
    import bpy

    t0 = time.perf_counter()
    report = run_operator("neural_preview", scene)
    seconds = time.perf_counter() - t0
    # The preview's source (the target's neutral face, rendered): a still to try `ml_core animate` with.
    shutil.copyfile(Path(bpy.path.abspath(_preview_folder(scene))).parent / "source.png", out / "character.png")
    return report, seconds


def sample_and_render(scene, rig, out: Path) -> tuple[np.ndarray, dict[str, np.ndarray], list]:
    """The active bake's shape-key values on every frame, and the character rendered on every frame."""
    import bpy
    import cv2

    from tools.synth import render as synth_render

    frames = np.arange(scene.frame_start, scene.frame_end + 1)
    key = rig.mesh.data.shape_keys
    baked = {sid: np.zeros(len(frames)) for sid in SEMANTIC}
    for i, f in enumerate(frames):
        scene.frame_set(int(f))
        for sid in SEMANTIC:
            baked[sid][i] = key.key_blocks[rig.names[sid]].value
    render_dir = out / "cache" / "baked_render"
    render_dir.mkdir(parents=True, exist_ok=True)
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(render_dir / "f_")
    with synth_render.quiet_output():
        bpy.ops.render.render(animation=True)
    images = [cv2.imread(str(render_dir / f"f_{f:04d}.png")) for f in frames]
    return frames, baked, images


def score(truth: dict, baked: dict[str, np.ndarray], n: int) -> tuple[dict, dict, dict]:
    """(ground truth, Pearson r, labels) per shape key over the first ``n`` frames."""
    ids = [str(x) for x in truth["curve_ids"]]
    gt = {sid: truth["curves"][:n, ids.index(sid)] for sid in SEMANTIC}
    scores = {sid: pearson(baked[sid][:n], gt[sid]) for sid in SEMANTIC}
    labels = {sid: score_label(scores[sid], baked[sid][:n], gt[sid]) for sid in SEMANTIC}
    return gt, scores, labels


def write_review(video: Path, scene, baked_images: list, out: Path, n: int) -> None:
    """review.mp4: driving | neural preview | baked character, side by side."""
    import bpy
    import cv2

    from ml_core.video import VideoReader, VideoWriter

    preview_files = sorted(Path(bpy.path.abspath(_preview_folder(scene))).glob("*.png"))
    with VideoReader(video) as reader, VideoWriter(out / "review.mp4", fps=25) as writer:
        for i, (_, frame) in enumerate(reader):
            if i >= n:
                break
            tiles = [cv2.resize(frame, (256, 256))]
            pv = cv2.imread(str(preview_files[min(i, len(preview_files) - 1)])) if preview_files else None
            tiles.append(
                cv2.resize(cv2.cvtColor(pv, cv2.COLOR_BGR2RGB), (256, 256))
                if pv is not None
                else np.zeros((256, 256, 3), np.uint8)
            )
            tiles.append(cv2.resize(cv2.cvtColor(baked_images[i], cv2.COLOR_BGR2RGB), (256, 256)))
            writer.write(np.concatenate(tiles, axis=1))


def print_summary(summary: dict, labels: dict, ex_labels: dict | None, reports: list[str], out: Path) -> None:
    n = summary["frames"]
    print()
    print(
        f"demo: {n} frames; extraction {summary['extract_fps']} frames/s; "
        f"preview {summary['preview_seconds']:.1f} s; total {summary['total_seconds']} s"
    )
    print("accuracy (Pearson r, baked vs ground truth): " + ", ".join(f"{k} {labels[k]}" for k in SEMANTIC))
    if ex_labels is not None:
        frames = summary["examples"]["frames"]
        print(
            f"side by side, bake from {len(frames)} examples (frames {', '.join(map(str, frames))}): "
            + ", ".join(f"{k} {ex_labels[k]}" for k in SEMANTIC)
        )
    for line in [r for r in reports if "keys" in r or "example frames" in r] or reports:
        print(f"  {line}")
    print(
        f"outputs: {out / 'demo.blend'}, {out / 'review.mp4'}, {out / 'curves.png'}, {out / 'summary.json'}, "
        f"{out / 'character.png'}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FOMM_WORKER_PYTHON", sys.executable)
    os.environ.setdefault("FOMM_CACHE_DIR", str(out / "cache"))
    t_start = time.perf_counter()
    bar = tqdm(total=8, unit="step", bar_format="{l_bar}{bar}| step {n_fmt}/{total_fmt} [{elapsed}]")
    steps = iter(
        [
            "rendering the driving performance",
            "extracting keypoints and Jacobians",
            "building the target character",
            "calibrating and baking shape keys",
            "baking control bones and the head bone",
            "rendering the neural preview",
            "writing demo.blend, curves.png and review.mp4",
            "baking from examples",
        ]
    )

    def stage() -> None:
        if bar.n or bar.desc:
            bar.update()
        _stage(bar, next(steps))

    stage()
    video, truth = render_driving(out, args.frames, args.size)
    stage()
    clip, clip_path, extract_s, bundle = extract_clip(video, out)
    stage()
    scene, rig = build_target(video, clip_path, len(clip.values), args.auto_neutral)
    stage()
    reports = [run_operator("bake_shape_keys", scene)]
    stage()
    reports += bake_bones(scene)
    stage()
    line, preview_s = neural_preview(scene, out)
    reports.append(line)
    stage()
    frames, baked, images = sample_and_render(scene, rig, out)
    n = min(len(frames), len(truth["curves"]))
    gt, scores, labels = score(truth, baked, n)
    plot_curves(out / "curves.png", frames[:n], gt, {k: v[:n] for k, v in baked.items()}, labels)
    write_review(video, scene, images, out, n)
    stage()
    examples = None
    ex_labels = None
    if args.examples:
        line, ex_baked, ex_frames = bake_from_examples(scene, rig, truth, args.examples, n)
        reports.append(line)
        _, ex_scores, ex_labels = score(truth, ex_baked, n)
        plot_curves(out / "curves_examples.png", frames[:n], gt, ex_baked, ex_labels)
        examples = {"frames": ex_frames, "pearson_r": {k: _round(v) for k, v in ex_scores.items()}}
    import bpy

    bpy.ops.wm.save_as_mainfile(filepath=str(out / "demo.blend"), check_existing=False)
    bar.update()
    bar.close()
    summary = {
        "frames": int(n),
        "extract_seconds": round(extract_s, 2),
        "extract_fps": round(len(clip.values) / extract_s, 1),
        "preview_seconds": round(preview_s, 2),
        "pearson_r": {k: _round(v) for k, v in scores.items()},
        "examples": examples,
        "reports": reports,
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "model": bundle.source,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, labels, ex_labels, reports, out)
    return 0


def _round(v: float) -> float | None:
    return round(v, 3) if np.isfinite(v) else None


def _preview_folder(scene) -> str:
    """The image-sequence folder of the preview plane's texture."""
    import bpy

    for img in bpy.data.images:
        if img.source == "SEQUENCE":
            return os.path.dirname(img.filepath)
    raise SystemExit("error: the neural preview plane has no image sequence")


if __name__ == "__main__":
    raise SystemExit(main())
