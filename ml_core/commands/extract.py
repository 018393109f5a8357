"""``python -m ml_core extract VIDEO -o CLIP.npz``: driving video -> motion clip (keypoints + Jacobians)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ml_core.commands._bars import StageBars
from ml_core.errors import FommError
from ml_core.fileio import check_output


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "extract",
        help="extract a motion clip (keypoint + Jacobian trajectories) from a driving video",
        description="Extract a motion clip (keypoint + Jacobian trajectories) from a driving video.",
    )
    p.add_argument("video", help="driving video (any container/codec OpenCV decodes)")
    p.add_argument("-o", "--output", metavar="CLIP.npz", help="motion clip to write (required)")
    p.add_argument("--checkpoint", help="checkpoint file (default: the shipped model)")
    p.add_argument("--config", help="YAML/JSON config or shipped config name (default: embedded or detected)")
    p.add_argument(
        "--crop",
        default="auto",
        metavar="auto|follow|steady|full|X,Y,SIZE",
        help="auto: the model's framing of the face (default; the embedded models follow it); follow: each frame "
        "cropped around the face where it is; steady: one steady box around the face; full: whole frame padded to "
        "a square; X,Y,SIZE: a square box in pixels (may reach past the borders, which are padded)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--batch", default="16", metavar="N", help="frames per inference batch (default 16)")
    p.add_argument(
        "--smooth",
        nargs="?",
        const="default",
        default=None,
        metavar="SPEC",
        help="One Euro smoothing; alone: defaults (zero lag); or e.g. min_cutoff=1,beta=20,d_cutoff=1,causal",
    )
    p.add_argument("--start", metavar="FRAME", help="first video frame to use (default 0)")
    p.add_argument("--end", metavar="FRAME", help="stop before this video frame (default: the last frame)")
    p.add_argument("--step", default="1", metavar="N", help="use every N-th frame (default 1)")
    p.add_argument(
        "--reference", default="auto", metavar="FRAME|auto", help="neutral frame: auto (default) or a frame number"
    )
    p.add_argument("--bf16", action="store_true", help="bfloat16 inference (faster on CPUs/GPUs that have it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _int(value: str | None, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    try:
        out = int(str(value).strip())
    except ValueError:
        raise FommError(f"{name} must be a whole number, got {value!r}") from None
    if out < minimum:
        raise FommError(f"{name} must be {minimum} or more, got {out}")
    return out


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The clip to write and the video to read; FommError for an output that cannot be written, before the long
    work."""
    if not args.output:
        raise FommError("give the motion clip to write with -o CLIP.npz")
    out = Path(args.output)
    if out.suffix.lower() != ".npz":
        raise FommError(f"the motion clip must be a .npz file, got {out.name}")
    if out.is_dir():
        raise FommError(f"{out} is a folder: give a file name ending in .npz")
    video = Path(args.video)
    if video.exists() and out.exists() and out.resolve() == video.resolve():
        raise FommError("the output clip would overwrite the input video: choose another -o")
    check_output(out, inputs=[video, args.checkpoint])  # writable, before the long work
    return out, video


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`ml_core.extraction.extract` from the command line (FommError if out of
    bounds)."""
    from ml_core.filters import parse_smooth
    from ml_core.framing import parse_box
    from ml_core.jobs import CROP_MODES

    crop: str | tuple[int, int, int] = args.crop.strip().lower()
    if crop not in CROP_MODES:
        crop = tuple(parse_box(args.crop))
    batch = _int(args.batch, "--batch", 1)
    step = _int(args.step, "--step", 1)
    start = _int(args.start, "--start", 0)
    end = _int(args.end, "--end", 1)
    reference: str | int = "auto"
    if str(args.reference).strip().lower() != "auto":
        reference = _int(args.reference, "--reference", 0)  # type: ignore[assignment]
    smooth = parse_smooth(args.smooth)
    return {
        "checkpoint": args.checkpoint,
        "config": args.config,
        "device": args.device,
        "batch_size": batch,
        "crop": crop,
        "start": start,
        "end": end,
        "step": step,
        "reference_frame": reference,
        "smooth": smooth,
        "dtype": "bf16" if args.bf16 else "fp32",
    }


def run(args: argparse.Namespace) -> int:
    out, video = _paths(args)
    options = _options(args)

    from ml_core.extraction import extract

    bars = StageBars(args.quiet)
    t0 = time.perf_counter()
    try:
        clip = extract(video, **options, progress=bars.progress("extracting"), log=lambda n: bars.write(f"note: {n}"))
    except BaseException:
        bars.close(failed=True)
        raise
    bars.close()
    elapsed = time.perf_counter() - t0
    clip.save(out)
    first, last = int(clip.frame_indices[0]), int(clip.frame_indices[-1])
    x, y, size = clip.crop_box
    print(
        f"wrote {out}: {clip.num_frames} frames ({first}-{last}) at {clip.fps:g} fps, {clip.num_kp} keypoints, "
        f"crop {x},{y},{size} ({clip.crop_mode}), reference frame {int(clip.frame_indices[clip.reference_frame])}, "
        f"{clip.num_frames / max(elapsed, 1e-9):.1f} frames/s"
    )
    return 0
