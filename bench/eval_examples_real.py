"""Real footage, Bake from Examples: the jaw curve learned from 8 posed frames against an independent lip gap.

    .venv/bin/python bench/eval_examples_real.py --reference REF.npz --clips CLIP.npz [CLIP.npz ...]

Inputs (both written by issue 13's ``bench/eval_real_footage.py`` on a real face video, read here as files):
``REF.npz``, MediaPipe FaceMesh landmarks of every video frame (``landmarks`` [T,468,>=2], ``found`` [T]; computed
in the separate ``.venv-bench`` by ``bench/facemesh_reference.py``); each ``CLIP.npz``, a motion clip of one segment
of that video, extracted by ``ml_core.extract`` with the product's defaults (its ``frame_indices`` are the video's
frames).

Reference signal per frame: the inner-lip gap (FaceMesh 13/14) divided by the outer eye-corner distance (33/263),
as issue 13's tool computes it. Per clip, an "animator" keys the jaw on ``--examples`` frames picked by the
reference's mouth openings, spread over their range (the frames whose gap is nearest to evenly spaced levels from
the least to the widest opening, no two within ``--min-gap`` frames), at the value the opening has there (the gap
scaled to [0, 1] over the clip). ``ml_core.examples.solve_examples`` learns the jaw from the clip's motion as the
add-on's Bake from Examples does (features of ``example_features``, panel defaults, bounds [0, 1]). Score: Pearson r
between the learned curve and the lip gap on the frames that are not examples (and where FaceMesh found the face).
Prints a Markdown table. ``--prior``: the examples start from the calibration (*Start from Calibration*): the clip is
first baked zero-shot onto the synthetic character of issue 13's tool (``bench/eval_real_footage.bake``: calibration
by rendering, panel defaults) and its jaw curve is the prior the examples correct, as the add-on does when that
character's shape keys were calibrated.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import pearson  # noqa: E402


def lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap over outer eye-corner distance, per frame, from FaceMesh landmarks [T,468,>=2]."""
    p = np.asarray(landmarks, float)[..., :2]
    return np.linalg.norm(p[:, 13] - p[:, 14], axis=-1) / np.linalg.norm(p[:, 33] - p[:, 263], axis=-1)


def openings_frames(gap: np.ndarray, usable: np.ndarray, count: int, min_gap: int) -> np.ndarray:
    """``count`` samples whose ``gap`` is nearest to evenly spaced levels over its range (usable samples only, none
    within ``min_gap`` of another), the least and the widest opening included. Sorted."""
    idx = np.flatnonzero(usable)
    lo, hi = float(gap[idx].min()), float(gap[idx].max())
    picked: list[int] = []
    for level in np.linspace(lo, hi, count):
        order = idx[np.argsort(np.abs(gap[idx] - level), kind="stable")]
        pick = next((int(t) for t in order if all(abs(int(t) - p) >= min_gap for p in picked)), None)
        if pick is not None:
            picked.append(pick)
    return np.sort(np.asarray(picked, dtype=np.int64))


def calibration_jaw(clip_path: Path, target_seed: int) -> np.ndarray:
    """The jaw curve of the clip's zero-shot bake (calibration by rendering) onto synthetic head ``target_seed``."""
    from bench.eval_real_footage import bake
    from ml_core.clip import load_clip

    return np.asarray(bake(clip_path, target_seed, load_clip(clip_path).fps)["jaw_open"], dtype=float)


def evaluate(
    clip_path: Path,
    gap_video: np.ndarray,
    found_video: np.ndarray,
    count: int,
    min_gap: int,
    prior: np.ndarray | None = None,
) -> dict:
    from ml_core.clip import load_clip
    from ml_core.examples import example_features, solve_examples

    clip = load_clip(clip_path)
    frames = np.asarray(clip.frame_indices, dtype=np.int64)
    if frames.max() >= len(gap_video):
        raise ValueError(f"{clip_path.name} reaches frame {frames.max()}, the reference has {len(gap_video)} frames")
    gap, found = gap_video[frames], found_video[frames]
    rows = openings_frames(gap, found, count, min_gap)
    lo, hi = float(gap[found].min()), float(gap[found].max())
    keyed = (gap[rows] - lo) / (hi - lo)
    jac = clip.jacobians if clip.has_jacobians else None
    blocks = example_features(clip.values, jac, clip.reference_frame)
    res = solve_examples(
        blocks,
        rows,
        keyed[:, None],
        ["jaw_open"],
        lower=[0.0],
        upper=[1.0],
        prior=None if prior is None else prior[:, None],
    )
    jaw = res.values[:, 0]
    held = found.copy()
    held[rows] = False
    return {
        "clip": clip_path.name,
        "frames": (int(frames[0]), int(frames[-1])),
        "examples": (frames[rows]).tolist(),
        "r": pearson(jaw[held], gap[held]),
        "held": int(held.sum()),
        "loo_max": res.fits[0].loo_max,
        "prior_used": res.prior_used,
        "prior_r": None if prior is None else pearson(prior[held], gap[held]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True, help="FaceMesh landmarks of the video (.npz)")
    ap.add_argument("--clips", type=Path, nargs="+", required=True, help="motion clips of segments of that video")
    ap.add_argument("--examples", type=int, default=8, help="example frames per clip")
    ap.add_argument("--min-gap", type=int, default=2, help="fewest frames between two examples")
    ap.add_argument("--prior", action="store_true", help="start from the clip's zero-shot calibration bake")
    ap.add_argument("--target-seed", type=int, default=23, help="the synthetic character of the calibration bake")
    ap.add_argument("--cache", type=Path, default=REPO / "bench" / "out" / "real" / "cache", help="calibration cache")
    args = ap.parse_args(argv)
    for path in (args.reference, *args.clips):
        if not path.is_file():
            print(f"error: {path} is not a file", file=sys.stderr)
            return 2
    with np.load(args.reference) as z:
        if "landmarks" not in z.files or "found" not in z.files:
            print(f"error: {args.reference} has no FaceMesh landmarks (landmarks, found)", file=sys.stderr)
            return 2
        landmarks, found = z["landmarks"], z["found"].astype(bool)
    gap = lip_gap(landmarks)
    if args.prior:
        from bench._common import use_model

        os.environ.setdefault("FOMM_WORKER_PYTHON", sys.executable)
        use_model(args.cache.resolve(), None, None)
    try:
        results = [
            evaluate(
                c,
                gap,
                found,
                args.examples,
                args.min_gap,
                calibration_jaw(c.resolve(), args.target_seed) if args.prior else None,
            )
            for c in args.clips
        ]
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"reference {args.reference.name}; {args.examples} examples per clip\n")
    head = "| clip | video frames | example frames | r, jaw vs lip gap (frames not examples) | frames scored |"
    extra = " calibration alone, same frames | calibration used |" if args.prior else ""
    print(head + extra)
    print("|---|---|---|---|---|" + ("---|---|" if args.prior else ""))
    for r in results:
        ex = ", ".join(map(str, r["examples"]))
        cells = f" {r['prior_r']:.3f} | {'yes' if r['prior_used'] else 'no'} |" if args.prior else ""
        print(f"| {r['clip']} | {r['frames'][0]}-{r['frames'][1]} | {ex} | {r['r']:.3f} | {r['held']} |" + cells)
    print(f"\nmean r over the clips: {np.nanmean([r['r'] for r in results]):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
