"""Real footage, zero-shot: the product's bake of a real face video scored against an independent landmark model.

    .venv/bin/python bench/eval_real_footage.py VIDEO                      # shipped model, product defaults
    .venv/bin/python bench/eval_real_footage.py VIDEO --checkpoint M.safetensors --face-scale 1.4
    .venv/bin/python bench/eval_real_footage.py --photos IMG [IMG ...]     # static check on photographs

Reference (independent of the product): MediaPipe FaceMesh 0.10.21 landmarks, computed by
``bench/facemesh_reference.py`` under its own environment (``.venv-bench``, ``make bench-env``) and read back from a
``.npz``: the two environments talk through files only. Signals per frame, normalised by the outer eye-corner distance
(landmarks 33/263): inner-lip gap (13/14), eye openness (159/145 and 386/374, mean of both eyes), brow height (brow
arch 105/334 above the eye-corner line, mean of both sides), mouth width (61/291).

Product side (this environment, ``.venv``): the video is split at its cuts (colour-histogram jumps) and every segment
where FaceMesh finds the face in at least 90 % of the frames is extracted with ``ml_core.extract`` (crop "auto",
reference "auto": the defaults) and baked zero-shot through ``bpy.ops.fomm.bake_shape_keys`` (panel defaults:
calibration by rendering, automatic calibration camera, Find Neutral Frame; no examples) onto a synthetic character
(``tools.synth.make_test_character``, arbitrary shape-key names). Pearson r: jaw_open against the lip gap, the mean
of blink_L/R against the eye closing (minus openness), the mean of brow_raise_L/R against the brow height, the mean
of smile_L/R against the mouth width. Also the fraction of keypoints inside FaceMesh's face oval, per segment, and a
contact sheet (keypoints in colour, crop box in white, face oval in green; each tile the crop box and a margin) per
segment under ``--out``.

``--photos``: each photograph is framed by the automatic face box (one frame's detection, as a clip's would be),
its keypoints detected, and the fraction of keypoints inside FaceMesh's face oval reported (FaceMesh runs on the
crop, upscaled, when it cannot find the face in the whole photograph).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import use_model  # noqa: E402

BENCH_PYTHON = REPO / ".venv-bench" / "bin" / "python"
SIGNALS = ("jaw", "blink", "brow", "smile")
KEYS = {
    "jaw": ("jaw_open",),
    "blink": ("blink_L", "blink_R"),
    "brow": ("brow_raise_L", "brow_raise_R"),
    "smile": ("smile_L", "smile_R"),
}


def fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, float) - np.mean(a)
    b = np.asarray(b, float) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else float("nan")


# ------------------------------------------------------------------------------------------- reference
def run_reference(inputs: list[Path], out: Path, bench_python: Path) -> dict[str, np.ndarray]:
    """FaceMesh landmarks for ``inputs`` (cached in ``out``), computed in the bench environment."""
    if not out.exists():
        if not bench_python.exists():
            raise RuntimeError(f"{bench_python} not found: run `make bench-env` first (or pass --bench-python)")
        cmd = [str(bench_python), str(REPO / "bench" / "facemesh_reference.py"), *map(str, inputs), "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            tail = [line for line in res.stderr.splitlines() if line.startswith("error:")] or res.stderr.splitlines()
            raise RuntimeError(f"FaceMesh reference failed: {tail[-1] if tail else res.returncode}")
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def signals(lm: np.ndarray) -> dict[str, np.ndarray]:
    """Mouth, eye and brow signals from FaceMesh landmarks [T, 468, >=2], normalised by the eye-corner distance."""
    p = np.asarray(lm, float)[..., :2]

    def dist(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(p[:, a] - p[:, b], axis=-1)

    scale = dist(33, 263)
    axis = (p[:, 263] - p[:, 33]) / scale[:, None]  # across the face, subject's right eye -> left eye
    up = np.stack([axis[:, 1], -axis[:, 0]], axis=-1)  # perpendicular, towards the forehead (image y grows down)
    mid = (p[:, 33] + p[:, 263]) / 2.0
    brow = (((p[:, 105] - mid) * up).sum(-1) + ((p[:, 334] - mid) * up).sum(-1)) / 2.0
    return {
        "jaw": dist(13, 14) / scale,
        "blink": -(dist(159, 145) + dist(386, 374)) / 2.0 / scale,
        "brow": brow / scale,
        "smile": dist(61, 291) / scale,
    }


def oval_ring(edges: np.ndarray) -> list[int]:
    """FaceMesh's face-oval edges (pairs of landmark indices) as one closed ring of indices."""
    nxt: dict[int, list[int]] = {}
    for a, b in np.asarray(edges).tolist():
        nxt.setdefault(a, []).append(b)
        nxt.setdefault(b, []).append(a)
    start = int(edges[0][0])
    ring, prev, cur = [start], None, start
    while True:
        cand = [n for n in nxt[cur] if n != prev]
        if not cand or cand[0] == start:
            break
        prev, cur = cur, cand[0]
        ring.append(cur)
    return ring


def inside_fraction(points: np.ndarray, polygon: np.ndarray) -> float:
    """Fraction of ``points`` [K,2] inside ``polygon`` [M,2] (pixels)."""
    poly = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
    inside = [cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0 for x, y in points]
    return float(np.mean(inside))


# -------------------------------------------------------------------------------------------- segments
def find_cuts(video: Path, threshold: float = 0.2) -> tuple[list[int], int]:
    """Frame indices where a new shot starts (hue/saturation histogram jump), and the frame count."""
    cap = cv2.VideoCapture(str(video))
    cuts, prev, i = [0], None, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
        h = cv2.calcHist([hsv], [0, 1], None, [16, 16], [0, 180, 0, 256])
        h = cv2.normalize(h, h).flatten()
        if prev is not None and cv2.compareHist(prev, h, cv2.HISTCMP_BHATTACHARYYA) > threshold:
            cuts.append(i)
        prev, i = h, i + 1
    cap.release()
    return cuts, i


def segments_of(video: Path, found: np.ndarray, min_frames: int, min_found: float) -> list[tuple[int, int]]:
    cuts, n = find_cuts(video)
    bounds = [*cuts, n]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b - a >= min_frames and found[a:b].mean() >= min_found:
            out.append((a, b))
    return out


def face_box(video: Path, start: int, end: int, scale: float):
    """The automatic face box of ``[start, end)`` with another ``scale`` (the framing lever)."""
    from ml_core.framing import FaceDetector, face_box_from_detections
    from ml_core.video import VideoReader

    det = FaceDetector()
    with VideoReader(video, start=start, end=end) as reader:
        w, h = reader.size
        step = max(1, (end - start) // 30)
        dets = [det(frame) for i, (_, frame) in enumerate(reader) if i % step == 0]
    return face_box_from_detections(dets, w, h, scale=scale)


# ------------------------------------------------------------------------------------------------ bake
def bake(clip_path: Path, target_seed: int, fps: float, size: int = 256) -> dict[str, np.ndarray]:
    """Zero-shot bake of ``clip_path`` onto a synthetic character through the add-on (panel defaults)."""
    import bpy

    from bench._common import addon_scene, baked_values
    from ml_core.clip import load_clip
    from tools.synth import CURVE_IDS

    scene, rig = addon_scene(target_seed, clip_path, fps, size)
    ret = bpy.ops.fomm.bake_shape_keys()
    if ret != {"FINISHED"}:
        raise RuntimeError(f"bake failed: {ret} {scene.fomm.last_report}")
    frames = np.arange(1, load_clip(clip_path).num_frames + 1)
    return {sid: baked_values(rig.mesh, rig.names[sid], frames) for sid in CURVE_IDS}


# --------------------------------------------------------------------------------------------- drawing
COLOURS = [(255, 60, 60), (60, 200, 60), (60, 120, 255), (255, 200, 0), (255, 0, 255), (0, 220, 220), (255, 140, 0)]


def draw(frame: np.ndarray, kp: np.ndarray, box, oval: np.ndarray | None, label: str) -> np.ndarray:
    img = frame.copy()
    x, y, s = box
    cv2.rectangle(img, (int(x), int(y)), (int(x + s), int(y + s)), (255, 255, 255), 2)
    if oval is not None and np.isfinite(oval).all():
        cv2.polylines(img, [np.round(oval).astype(np.int32)], True, (0, 255, 0), 1, cv2.LINE_AA)
    r = max(2, int(round(s / 50)))
    for i, (u, v) in enumerate(kp):
        cv2.circle(img, (int(round(u)), int(round(v))), r, COLOURS[i % len(COLOURS)], -1, cv2.LINE_AA)
    from ml_core.framing import crop_square

    m = s // 4  # the crop box and a margin around it, enlarged: the keypoints stay visible
    img = crop_square(img, (x - m, y - m, s + 2 * m), 360)
    cv2.putText(img, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return img


def sheet(tiles: list[np.ndarray], path: Path, cols: int = 4, width: int = 360) -> None:
    from ml_core.fileio import atomic_path

    small = [cv2.resize(t, (width, round(t.shape[0] * width / t.shape[1]))) for t in tiles]
    h = max(t.shape[0] for t in small)
    small = [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0))) for t in small]
    while len(small) % cols:
        small.append(np.zeros_like(small[0]))
    rows = [np.concatenate(small[i : i + cols], axis=1) for i in range(0, len(small), cols)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


# ---------------------------------------------------------------------------------------------- photos
def eval_photos(args: argparse.Namespace) -> int:
    from ml_core import load_model
    from ml_core.extraction import detect
    from ml_core.framing import (
        FaceDetector,
        crop_square,
        face_box_from_detections,
        face_scale_for,
        follow_boxes,
        follows_face,
        full_frame_box,
    )

    bundle = load_model(args.checkpoint, args.config)
    # one frame of a following crop, unless a steady box's scale was asked for
    follow = follows_face(args.crop, bundle.config) and args.face_scale is None
    if args.face_scale is None:  # the product's automatic box for this model
        args.face_scale = face_scale_for(bundle.config)
    detector = FaceDetector()
    tiles, rows = [], []
    for path in args.photos:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            return fail(f"cannot read {path} as an image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        face = detector(rgb)
        if follow and face is not None:
            box = tuple(int(v) for v in follow_boxes([0], [face], 1)[0])
        else:
            box = face_box_from_detections([face], w, h, scale=args.face_scale) or full_frame_box(w, h)
        crop = crop_square(rgb, box, bundle.image_size)
        values, _ = detect(bundle, crop[None])
        kp = np.stack([box[0] + (values[0, :, 0] + 1) / 2 * box[2], box[1] + (values[0, :, 1] + 1) / 2 * box[2]], -1)
        ref = run_reference([path], args.out / "ref" / f"{path.stem}.npz", args.bench_python)
        where = "photo"
        if not ref["found"][0]:  # FaceMesh's detector is short-range: try the face box, enlarged
            big = crop_square(rgb, box, 512)
            tag = "_".join(str(int(v)) for v in box)  # the cache is per face box
            crop_file = args.out / "ref" / f"{path.stem}_crop_{tag}.png"
            crop_file.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(crop_file), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
            ref = run_reference([crop_file], crop_file.with_suffix(".npz"), args.bench_python)
            ref["landmarks"][..., :2] = ref["landmarks"][..., :2] * (box[2] / 512) + np.array(box[:2], float)
            where = "face box"
        if not ref["found"][0]:
            rows.append((path.name, box, None, where))
            tiles.append(draw(rgb, kp, box, None, f"{path.name}: no FaceMesh face"))
            continue
        oval = ref["landmarks"][0, oval_ring(ref["face_oval"]), :2]
        frac = inside_fraction(kp, oval)
        rows.append((path.name, box, frac, where))
        tiles.append(draw(rgb, kp, box, oval, f"{path.name}: {frac:.2f} inside"))
    sheet(tiles, args.out / "photos.png", cols=min(3, len(tiles)))
    framing = "following box (one frame)" if follow else "steady box"
    print(f"model: {args.checkpoint or 'shipped default model'}; {framing}, face box scale {args.face_scale}")
    print("\n| photograph | face box (x, y, size) | keypoints inside the FaceMesh face oval | FaceMesh on |")
    print("|---|---|---|---|")
    for name, box, frac, where in rows:
        print(f"| {name} | {tuple(int(v) for v in box)} | {'-' if frac is None else f'{frac:.2f}'} | {where} |")
    print(f"\ncontact sheet: {args.out / 'photos.png'}")
    return 0


# ----------------------------------------------------------------------------------------------- video
def _synthetic_clips(folder: Path, bundle) -> list:
    """A ``tools.synth`` set's training clips with the model's supervised landmarks (for ``--adapt-synthetic``)."""
    from ml_core.train.dataset import load_clips
    from ml_core.train.trainer import landmark_names_of

    return load_clips(folder, "train", bundle.image_size, landmark_names_of(bundle.config["train_params"]))


def _adapted(bundle, video: Path, crop, frames: tuple[int, int], args: argparse.Namespace, synthetic):
    """``bundle`` adapted to the performer of video frames [a, b) (``--adapt``: ml_core.train.adapt)."""
    from ml_core.train.adapt import AdaptOptions, adapt_model, performer_frames

    crops = performer_frames(str(video), bundle, crop, *frames)
    opts = AdaptOptions(iterations=args.adapt, anchor=args.adapt_anchor)
    return adapt_model(bundle, crops, opts, synthetic=synthetic)


def eval_video(args: argparse.Namespace) -> int:
    from ml_core import extract, load_model
    from ml_core.video import VideoReader

    video: Path = args.video
    if not video.is_file():
        return fail(f"{video} is not a file")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FOMM_WORKER_PYTHON", sys.executable)
    use_model(out / "cache", args.checkpoint, args.config)
    t0 = time.perf_counter()
    ref = run_reference([video], out / f"ref_{video.stem}.npz", args.bench_python)
    lm, found = ref["landmarks"], ref["found"].astype(bool)
    segs = segments_of(video, found, args.min_frames, 0.9)
    if args.segments:
        segs = [segs[i - 1] for i in args.segments if 1 <= i <= len(segs)]
    if not segs:
        return fail(f"no segment of {video} has a face FaceMesh finds in 90% of its frames")
    bundle = load_model(args.checkpoint, args.config)
    ring = oval_ring(ref["face_oval"])
    synthetic = _synthetic_clips(args.adapt_synthetic, bundle) if args.adapt and args.adapt_synthetic else None
    results = []
    for si, (a, b) in enumerate(segs, 1):
        label = args.segments[si - 1] if args.segments else si
        crop = args.crop if args.face_scale is None else tuple(face_box(video, a, b, args.face_scale))
        net = _adapted(bundle, video, crop, (a, b), args, synthetic) if args.adapt else bundle
        clip = extract(str(video), model=net, crop=crop, start=a, end=b)
        clip_path = out / f"clip_{video.stem}_{label}.npz"
        clip.save(clip_path)
        baked = bake(clip_path, args.target_seed, clip.fps)
        seg_lm, seg_found = lm[a:b], found[a:b]
        sig = signals(np.where(seg_found[:, None, None], seg_lm, lm[a:b][seg_found][0]))
        row = {"segment": label, "frames": [int(a), int(b)], "crop_box": list(map(int, clip.crop_box))}
        for name in SIGNALS:
            curve = np.mean([baked[k] for k in KEYS[name]], axis=0)
            row[name] = pearson(curve[seg_found], sig[name][seg_found])
        row["blink_L_R"] = [pearson(baked[k][seg_found], sig["blink"][seg_found]) for k in KEYS["blink"]]
        px = clip.to_pixels()
        inside = [inside_fraction(px[t], seg_lm[t, ring, :2]) for t in range(len(px)) if seg_found[t]]
        row["inside_oval"] = float(np.mean(inside))
        row["signal_ptp"] = {k: float(np.ptp(v[seg_found])) for k, v in sig.items()}
        results.append(row)
        picks = set(np.linspace(0, b - a - 1, 8).round().astype(int).tolist())
        tiles = []
        with VideoReader(video, start=a, end=b) as reader:
            for t, (_, frame) in enumerate(reader):
                if t in picks:
                    oval = seg_lm[t, ring, :2] if seg_found[t] else None
                    tiles.append(draw(frame, px[t], clip.crop_box, oval, f"frame {a + t}"))
        sheet(tiles, out / f"keypoints_{video.stem}_{label}.png")
        print(
            f"segment {label} frames {a}-{b - 1}: "
            + ", ".join(f"{k} r {row[k]:.2f}" for k in SIGNALS)
            + f", inside oval {row['inside_oval']:.2f}",
            flush=True,
        )

    model = args.checkpoint or "shipped default model"
    print(
        f"\nmodel: {model}; video {video.name}; face box scale "
        f"{'default (auto)' if args.face_scale is None else args.face_scale}; target head {args.target_seed}; "
        f"{time.perf_counter() - t0:.0f} s\n"
    )
    print("| segment | frames | crop box | jaw r | blink r (L, R) | brow r | smile r | keypoints inside face oval |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        bl = ", ".join(f"{v:.2f}" for v in r["blink_L_R"])
        print(
            f"| {r['segment']} | {r['frames'][0]}-{r['frames'][1] - 1} | {tuple(r['crop_box'])} | {r['jaw']:.2f} "
            f"| {r['blink']:.2f} ({bl}) | {r['brow']:.2f} | {r['smile']:.2f} | {r['inside_oval']:.2f} |"
        )
    tag = args.tag or "run"
    (out / f"summary_{video.stem}_{tag}.json").write_text(
        json.dumps({"model": str(model), "results": results}, indent=1)
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", type=Path, help="a face video")
    ap.add_argument("--photos", nargs="+", type=Path, help="still photographs instead of a video")
    ap.add_argument("--checkpoint", default=None, help="model weights (default: the shipped default model)")
    ap.add_argument("--config", default=None)
    ap.add_argument(
        "--face-scale",
        type=float,
        default=None,
        help="face box side / face size (default: the product's automatic box)",
    )
    ap.add_argument(
        "--crop",
        default="auto",
        choices=["auto", "steady", "follow"],
        help="the product's framing: auto (the model's choice), a steady box, or one that follows the face",
    )
    ap.add_argument("--adapt", type=int, default=0, help="adapt to the performer first: iterations (0: no)")
    ap.add_argument("--adapt-anchor", type=float, default=10.0, help="the adaptation's anchor weight")
    ap.add_argument("--adapt-synthetic", type=Path, default=None, help="tools.synth data mixed into the adaptation")
    ap.add_argument("--segments", type=int, nargs="+", default=None, help="1-based segments to evaluate")
    ap.add_argument("--min-frames", type=int, default=24, help="shortest segment kept")
    ap.add_argument("--target-seed", type=int, default=23, help="the synthetic character baked onto")
    ap.add_argument("--bench-python", type=Path, default=BENCH_PYTHON, help="Python of the bench environment")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "real")
    ap.add_argument("--tag", default=None, help="name of this run's summary file")
    args = ap.parse_args(argv)
    args.out = args.out.resolve()  # the worker and Blender resolve paths from elsewhere
    try:
        if args.photos:
            args.out.mkdir(parents=True, exist_ok=True)
            return eval_photos(args)
        if args.video is None:
            return fail("give a video or --photos")
        return eval_video(args)
    except RuntimeError as exc:
        return fail(str(exc))


if __name__ == "__main__":
    raise SystemExit(main())
