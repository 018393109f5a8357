"""``python -m ml_core animate SOURCE_IMAGE (CLIP.npz|VIDEO) -o OUT.mp4|OUT_DIR/``: the neural preview."""

from __future__ import annotations

import argparse
from pathlib import Path

from ml_core.commands._bars import StageBars
from ml_core.errors import FommError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "animate",
        help="animate a still image with a motion clip or driving video (neural preview)",
        description="Animate a still image with a motion clip (or a driving video, extracted first) through the "
        "model's generator. Frames are written as they are made; nothing is left behind on an error or Ctrl-C.",
    )
    p.add_argument("source", help="source image (PNG/JPEG, any size: framed to a square, never stretched)")
    p.add_argument("driving", help="motion clip (.npz from 'extract') or a driving video")
    p.add_argument(
        "-o",
        "--output",
        action="append",
        metavar="OUT.mp4|OUT_DIR/",
        help="a video (.mp4/.mov/.avi) or a folder for preview_0001.png ... (Blender image sequence); repeatable",
    )
    p.add_argument("--checkpoint", help="checkpoint file (default: the shipped model)")
    p.add_argument("--config", help="YAML/JSON config or shipped config name (default: embedded or detected)")
    p.add_argument(
        "--mode",
        default="relative",
        choices=("relative", "absolute"),
        help="relative: the clip's motion from its reference frame moves the source (default); "
        "absolute: the clip's keypoints as they are",
    )
    p.add_argument(
        "--no-adapt-scale",
        action="store_true",
        help="relative mode without movement-scale adaptation (keypoint hull size ratio)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--batch", default="8", metavar="N", help="frames per generator batch (default 8)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 inference (faster on CPUs/GPUs that have it)")
    p.add_argument("--review", metavar="REVIEW.mp4", help="also write a side-by-side driving | preview video")
    p.add_argument("--fps", metavar="FPS", help="video frame rate (default: the clip's, over its frame step)")
    p.add_argument(
        "--crop",
        default="full",
        metavar="full|auto|X,Y,SIZE",
        help="how the source image is framed: full (whole image padded to a square, default), auto "
        "(around the face), or a square box in pixels",
    )
    p.add_argument(
        "--driving-crop",
        default="auto",
        metavar="auto|full|X,Y,SIZE",
        help="framing of a driving video before extraction (as 'extract --crop'; default auto)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse a clip extracted with another configuration or checkpoint (default: warn)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _crop(text: str) -> str | tuple[int, int, int]:
    from ml_core.framing import parse_box

    value = str(text).strip().lower()
    if value in ("auto", "full"):
        return value
    return tuple(parse_box(text))


def _checked(args: argparse.Namespace) -> tuple[int, float | None]:
    """(batch, fps) from the command line; an output that would overwrite an input is refused."""
    if not args.output and not args.review:
        raise FommError("give the preview to write with -o OUT.mp4 or -o OUT_DIR/ (or --review REVIEW.mp4)")
    try:
        batch = int(str(args.batch).strip())
    except ValueError:
        raise FommError(f"--batch must be a whole number, got {args.batch!r}") from None
    if batch < 1:
        raise FommError(f"--batch must be 1 or more, got {batch}")
    fps = None
    if args.fps is not None:
        try:
            fps = float(args.fps)
        except ValueError:
            raise FommError(f"--fps must be a number, got {args.fps!r}") from None
    inputs = {Path(p).resolve() for p in (args.source, args.driving) if Path(p).exists()}
    for out in [*(args.output or []), *([args.review] if args.review else [])]:
        if Path(out).resolve() in inputs:
            raise FommError(f"the output {out} would overwrite an input: choose another path")
    return batch, fps


def run(args: argparse.Namespace) -> int:
    batch, fps = _checked(args)
    crop = _crop(args.crop)
    extract_options: dict = {"crop": _crop(args.driving_crop)}

    from ml_core.animation import animate

    bars = StageBars(args.quiet)
    if Path(args.driving).suffix.lower() != ".npz":
        extract_options["progress"] = bars.progress("extracting")
    try:
        info = animate(
            args.source,
            args.driving,
            args.output,
            checkpoint=args.checkpoint,
            config=args.config,
            mode=args.mode,
            adapt_movement_scale=not args.no_adapt_scale,
            device=args.device,
            batch_size=batch,
            dtype="bf16" if args.bf16 else "fp32",
            review=args.review,
            fps=fps,
            progress=bars.progress("animating"),
            crop=crop,
            strict=args.strict,
            extract_options=extract_options,
            log=lambda line: bars.write(f"warning: {line}"),
        )
    except BaseException:
        bars.close(failed=True)
        raise
    bars.close()
    written = [*(args.output or []), *([args.review] if args.review else [])]
    rate = info["frames"] / max(info["seconds"], 1e-9)
    print(
        f"wrote {', '.join(written)}: {info['frames']} frames {info['width']}x{info['height']} at "
        f"{info['fps']:g} fps ({rate:.2f} frames/s)"
    )
    return 0
