"""Cost of the face-following crop: extraction time per frame with crop "follow" against "steady", side by side.

    .venv/bin/python bench/bench_follow.py [VIDEO] [--minutes 5] [--rounds 2]

The two framings differ only in how the face is searched and cropped: "steady" searches ``FACE_SAMPLES`` (120)
frames spread over the selection and crops every frame with one box; "follow" searches ``FACE_SAMPLES`` or
``FOLLOW_RATE`` (1) frames per second of video, whichever is more, and crops every frame with its own box. Timed
end to end (`ml_core.extract`, shipped default model, batch 16, fp32, 2 torch threads): the video itself (default
`Megamind.avi` of Debian's opencv-doc: 270 frames, 720x528) and a long one made of it played over and over
(``--minutes``, written once as MPEG-4 Part 2 into ``--out``). Rounds alternate the order; the ratio is taken within
each round. Prints a Markdown table with the machine line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import load_average, machine  # noqa: E402

MEGAMIND = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")


def looped(video: Path, minutes: float, out: Path) -> Path:
    """``video`` played over and over for ``minutes``, written once (kept in ``out`` for later runs)."""
    from ml_core.video import VideoReader, VideoWriter

    path = out / f"{video.stem}_{minutes:g}min.mp4"
    if path.is_file():
        return path
    with VideoReader(video) as reader:
        fps = reader.fps
        frames = [f for _, f in reader]
    total = int(round(minutes * 60 * fps))
    with VideoWriter(path, fps=fps) as writer:
        for i in range(total):
            writer.write(frames[i % len(frames)])
    return path


def timed(video: Path, bundle: object, crop: str) -> tuple[float, int, str]:
    from ml_core import extract

    t0 = time.perf_counter()
    clip = extract(str(video), model=bundle, crop=crop, batch_size=16)
    return time.perf_counter() - t0, clip.num_frames, clip.crop_mode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", type=Path, default=MEGAMIND)
    ap.add_argument("--minutes", type=float, default=5.0, help="length of the looped video")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "follow")
    args = ap.parse_args()
    if not args.video.is_file():
        print(f"error: {args.video} is not a file", file=sys.stderr)
        return 2
    import torch

    from ml_core import load_model

    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = load_model(None, None)
    videos = [args.video, looped(args.video, args.minutes, args.out)]
    before = load_average()
    print(f"machine: {machine()}; load average before: {before}\n")
    print("| video | frames | steady, ms/frame | follow, ms/frame | follow / steady (per round) |")
    print("|---|---|---|---|---|")
    for video in videos:
        times: dict[str, list[float]] = {"steady": [], "follow": []}
        frames = 0
        for r in range(args.rounds):
            order = ("steady", "follow") if r % 2 == 0 else ("follow", "steady")
            for crop in order:
                seconds, frames, mode = timed(video, bundle, crop)
                times[crop].append(1000.0 * seconds / frames)
        ratios = [f / s for f, s in zip(times["follow"], times["steady"], strict=True)]
        print(
            f"| {video.name} | {frames} | {min(times['steady']):.2f} | {min(times['follow']):.2f} | "
            + ", ".join(f"{x:.3f}" for x in ratios)
            + " |",
            flush=True,
        )
    print(f"\nload average after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
