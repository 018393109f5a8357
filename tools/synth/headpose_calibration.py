"""A model's own head-pose calibration: what ``ml_core.headpose`` uses when a clip is baked onto a head bone
with no calibrated target (command line, farm, an armature without shape keys).

    .venv/bin/python -m tools.synth.headpose_calibration                      # the shipped default model
    .venv/bin/python -m tools.synth.headpose_calibration --checkpoint CKPT --config CFG -o OUT.npz

A synthetic head (``--seed``, semantic shape keys) is calibrated exactly as the add-on calibrates a target
(:func:`blender_fomm.calibration.render_calibration`: the add-on's automatic front view, the neutral face, each
key at 1.0, the face turned and nodded by +/- 8 degrees), the model detects the renders, and the calibration is
saved (its ``meta`` records the checkpoint hash, so another model never uses it). About 10 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="model weights (default: the shipped default model)")
    ap.add_argument("--config", default=None)
    ap.add_argument("--seed", type=int, default=900, help="the synthetic head (not one the benchmarks score)")
    ap.add_argument("--size", type=int, default=256, help="render size (the add-on's default)")
    ap.add_argument("-o", "--output", type=Path, default=REPO / "ml_core" / "assets" / "default" / "headpose.npz")
    args = ap.parse_args(argv)

    from blender_fomm.calibration import auto_view, calibration_from_detections, render_calibration
    from ml_core.errors import FommError
    from ml_core.worker import run_detect_images
    from tools.synth import CURVE_IDS, build_head
    from tools.synth.render import reset_scene

    try:
        reset_scene()
        rig = build_head(args.seed, "semantic")
        names = [rig.names[sid] for sid in CURVE_IDS]
        view = auto_view(rig.mesh, names)
        with tempfile.TemporaryDirectory(prefix="headpose_") as tmp:
            images = render_calibration(rig.mesh, names, view, Path(tmp) / "renders", args.size)
            job = {
                "images": [str(p) for p in images],
                "output": str(Path(tmp) / "detections.npz"),
                "checkpoint": args.checkpoint,
                "config": args.config,
            }
            run_detect_images(job, lambda _event: None)
            meta = {"object": f"synthetic head {args.seed}", "render_size": args.size, "purpose": "head pose"}
            calib = calibration_from_detections(job["output"], names, meta, args.output)
    except FommError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {calib.num_kp} keypoints, model {calib.meta['checkpoint_hash']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
