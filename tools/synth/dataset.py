"""``python -m tools.synth``: render a dataset of synthetic performances in the authors' layout.

``DIR/train/<identity>_<clip>.mp4`` (+ ``.npz`` ground truth) and ``DIR/test/...`` with held-out
identities (characters never in train). Resumable: a clip whose ``.npz`` and ``.mp4`` both exist is
skipped; every file is written atomically (the video last), so an interrupted run leaves no half clip
and no video without its ground truth.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ml_core.errors import FommError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message otherwise)
        raise FommError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m tools.synth",
        description="Render synthetic talking heads (video + ground-truth .npz) in the FOMM layout.",
    )
    p.add_argument("--out", required=True, help="dataset folder (created; train/ and test/ inside)")
    p.add_argument("--identities", type=int, default=20, help="training identities (default 20)")
    p.add_argument("--test-identities", type=int, default=4, help="held-out identities in test/ (default 4)")
    p.add_argument("--clips-per-identity", type=int, default=4, help="clips per identity (default 4)")
    p.add_argument("--frames", type=int, default=80, help="frames per clip (default 80)")
    p.add_argument("--size", type=int, default=128, help="square frame side in pixels (default 128)")
    p.add_argument("--fps", type=int, default=25, help="frames per second (default 25)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument(
        "--naming",
        default="semantic",
        choices=("semantic", "arkit", "custom"),
        help="shape-key display names on the rendered heads (ground truth uses semantic ids)",
    )
    p.add_argument(
        "--aa",
        default="5",
        choices=("OFF", "FXAA", "5", "8", "11", "16", "32"),
        help="Workbench anti-aliasing samples (default 5; FXAA ~1.6x faster, 8 ~1.7x slower)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def validate(args: argparse.Namespace) -> None:
    checks = [
        (args.identities >= 1, f"--identities must be >= 1 (got {args.identities})"),
        (args.test_identities >= 0, f"--test-identities must be >= 0 (got {args.test_identities})"),
        (args.clips_per_identity >= 1, f"--clips-per-identity must be >= 1 (got {args.clips_per_identity})"),
        (2 <= args.frames <= 100000, f"--frames must be between 2 and 100000 (got {args.frames})"),
        (32 <= args.size <= 1024, f"--size must be between 32 and 1024 pixels (got {args.size})"),
        (1 <= args.fps <= 240, f"--fps must be between 1 and 240 (got {args.fps})"),
        (args.seed >= 0, f"--seed must be >= 0 (got {args.seed})"),
    ]
    for ok, msg in checks:
        if not ok:
            raise FommError(msg)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FommError(f"--out {out} exists and is not a folder; pick another path")


def _require_opencv() -> None:
    try:
        import cv2  # noqa: F401  (fail before rendering anything)
    except ImportError as exc:
        raise FommError(
            "the dataset writer needs OpenCV for mp4 (opencv-python-headless); run it with the project's .venv"
        ) from exc


def identity_name(index: int) -> str:
    return f"id{index:04d}"


def plan(args: argparse.Namespace) -> list[tuple[str, int, int, Path]]:
    """Every clip: (split, identity index, clip index, video path)."""
    out = Path(args.out)
    jobs = []
    for i in range(args.identities + args.test_identities):
        split = "train" if i < args.identities else "test"
        for c in range(args.clips_per_identity):
            jobs.append((split, i, c, out / split / f"{identity_name(i)}_c{c:02d}.mp4"))
    return jobs


def is_complete(video: Path) -> bool:
    return video.is_file() and video.with_suffix(".npz").is_file()


def _seed(*parts: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def generate(args: argparse.Namespace, progress: Callable[[int, int | None], None] | None = None) -> dict:
    """Render every missing clip; returns counts {"rendered", "skipped", "total"}."""
    validate(args)
    jobs = plan(args)
    todo = [j for j in jobs if not is_complete(j[3])]
    done = len(jobs) - len(todo)
    if progress:
        progress(done, len(jobs))
    if todo:
        _require_opencv()
        from . import render as R
        from .head import build_head
        from .performance import make_performance

        current = None
        rig = None
        for split, i, c, video in todo:
            del split
            if current != i:
                R.reset_scene()
                rig = build_head(_seed(args.seed, i, 1), args.naming, name=identity_name(i))
                rig.identity = identity_name(i)
                current = i
            perf = make_performance(_seed(args.seed, i, c, 2), args.frames, args.fps)
            R.render_clip(rig, perf, video, size=args.size, look_seed=_seed(args.seed, i, c, 3), aa=args.aa)
            done += 1
            if progress:
                progress(done, len(jobs))
    return {"rendered": len(todo), "skipped": len(jobs) - len(todo), "total": len(jobs)}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        validate(args)
        _require_opencv()
        bar = None
        if not args.no_progress:
            try:
                from tqdm import tqdm
            except ImportError:  # no bar, still works
                tqdm = None
            if tqdm is not None:
                bar = tqdm(total=None, unit="clip", desc="synth", file=sys.stderr)

        def progress(done: int, total: int | None) -> None:
            if bar is not None:
                bar.total = total
                bar.n = done
                bar.refresh()

        try:
            counts = generate(args, progress)
        finally:
            if bar is not None:
                bar.close()
        print(
            f"{counts['rendered']} clips rendered, {counts['skipped']} already complete, "
            f"{counts['total']} in {args.out}"
        )
        return 0
    except FommError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished clips are kept, nothing half-written", file=sys.stderr)
        return 130
