"""``python -m tools.synth.speed``: render speed of one clip per anti-aliasing setting (wall and CPU)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.synth.speed")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--frames", type=int, default=80)
    p.add_argument("--aa", default="FXAA,5,8")
    args = p.parse_args(argv)
    from . import render as R
    from .head import build_head
    from .performance import make_performance

    t0 = time.perf_counter()
    R.reset_scene()
    rig = build_head(0, "semantic")
    print(
        f"head build: {time.perf_counter() - t0:.2f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    perf = make_performance(0, args.frames)
    for aa in args.aa.split(","):
        t0, c0 = time.perf_counter(), time.process_time()
        R.render_frames(rig, perf, size=args.size, look_seed=0, aa=aa)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"aa={aa}: {args.frames / wall:.1f} frames/s wall, {args.frames / cpu:.1f} frames per CPU-second "
            f"({args.size} px, keyframes + render + landmarks)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
