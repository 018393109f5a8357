"""``python -m ml_core info [CHECKPOINT] [--config CFG]``: what a checkpoint holds, without running it."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="describe a checkpoint (default: the embedded model)")
    p.add_argument("checkpoint", nargs="?", help="checkpoint file (default: the embedded model)")
    p.add_argument("--config", help="YAML/JSON config or shipped name (default: embedded or detected)")
    return p


def run(args: argparse.Namespace) -> int:
    from ml_core.model import load_model

    bundle = load_model(args.checkpoint, args.config)
    counts = bundle.parameter_counts()
    rows = [
        ("checkpoint", str(bundle.source)),
        ("config", f"{bundle.config_name or 'embedded'} (hash {bundle.config_hash})"),
        ("keypoints", f"{bundle.num_kp}, jacobians: {'yes' if bundle.estimate_jacobian else 'no'}, "
                      f"input {bundle.image_size}x{bundle.image_size}"),
        *((name, f"{n:,} parameters") for name, n in counts.items()),
    ]
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        print(f"{label + ':':{width}s}{value}")
    return 0
