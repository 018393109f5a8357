"""``python -m tools.synth.contact_sheet --out sheet.png``: identities x expressions, for eyeballing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from .performance import CURVE_IDS

EXPRESSIONS: list[tuple[str, dict[str, float], tuple[float, float, float]]] = [
    ("neutral", {}, (0, 0, 0)),
    ("jaw_open", {"jaw_open": 1.0}, (0, 0, 0)),
    ("smile", {"smile_L": 1.0, "smile_R": 1.0}, (0, 0, 0)),
    ("blink", {"blink_L": 1.0, "blink_R": 1.0}, (0, 0, 0)),
    ("brow_raise", {"brow_raise_L": 1.0, "brow_raise_R": 1.0}, (0, 0, 0)),
    ("pucker", {"pucker": 1.0}, (0, 0, 0)),
    ("wink+talk, yaw", {"jaw_open": 0.6, "smile_L": 0.7, "blink_R": 1.0}, (0.4, 0.1, 0.08)),
    ("smirk, pitch/roll", {"smile_R": 1.0, "brow_raise_L": 1.0}, (-0.3, -0.2, -0.15)),
]


def contact_sheet(seeds: Sequence[int], size: int = 128) -> np.ndarray:
    """RGB uint8 image: one row per identity seed, one column per entry of :data:`EXPRESSIONS`."""
    from . import render as R
    from .head import build_head

    rows = []
    for seed in seeds:
        R.reset_scene()
        rig = build_head(seed, "custom")
        perf = {
            "curves": np.array([[e.get(s, 0.0) for s in CURVE_IDS] for _, e, _ in EXPRESSIONS], np.float32),
            "curve_ids": list(CURVE_IDS),
            "head_rotation": np.array([r for _, _, r in EXPRESSIONS], np.float32),
            "head_translation": np.zeros((len(EXPRESSIONS), 3), np.float32),
            "fps": 25.0,
        }
        frames, _, _ = R.render_frames(rig, perf, size=size, look_seed=seed)
        rows.append(np.concatenate(list(frames), axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.synth.contact_sheet")
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="0,1,2,3,4,5")
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args(argv)
    import cv2

    from ml_core.fileio import atomic_path

    img = contact_sheet([int(s) for s in args.seeds.split(",")], args.size)
    with atomic_path(args.out, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), img[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
