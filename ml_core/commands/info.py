"""``python -m ml_core info [CHECKPOINT|CLIP.npz] [--config CFG]``: what a checkpoint (or a motion clip) holds,
without running it."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="describe a checkpoint (default: the embedded model) or a motion clip")
    p.add_argument("checkpoint", nargs="?", help="checkpoint file (default: the embedded model), or a clip .npz")
    p.add_argument("--config", help="YAML/JSON config or shipped name (default: embedded or detected)")
    return p


def _clip_rows(path: str) -> list[tuple[str, str]]:
    from ml_core.clip import load_clip

    clip = load_clip(path)
    t = clip.times
    return [
        ("motion clip", path),
        (
            "samples",
            f"{clip.num_frames} (video frames {int(clip.frame_indices[0])}-{int(clip.frame_indices[-1])}), "
            f"{t[-1] - t[0]:.3f} s at {clip.fps:g} fps on average",
        ),
        (
            "keypoints",
            f"{clip.num_kp}, jacobians: {'yes' if clip.has_jacobians else 'no'}, input "
            f"{clip.image_size}x{clip.image_size}",
        ),
        ("model", f"config hash {clip.config_hash}, checkpoint hash {clip.checkpoint_hash}"),
        (
            "video",
            f"{clip.source_path or 'unknown'} ({clip.video_size[0]}x{clip.video_size[1]}), crop "
            f"{','.join(str(v) for v in clip.crop_box)} ({clip.crop_mode})",
        ),
        *(("note", n) for n in clip.notes),
    ]


def _print(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        print(f"{label + ':':{width}s}{value}")


def run(args: argparse.Namespace) -> int:
    from ml_core.model import load_model

    if args.checkpoint and str(args.checkpoint).lower().endswith(".npz"):
        _print(_clip_rows(args.checkpoint))
        return 0

    bundle = load_model(args.checkpoint, args.config)
    counts = bundle.parameter_counts()
    rows = [
        ("checkpoint", str(bundle.source)),
        ("config", f"{bundle.config_name or 'embedded'} (hash {bundle.config_hash})"),
        (
            "keypoints",
            f"{bundle.num_kp}, jacobians: {'yes' if bundle.estimate_jacobian else 'no'}, "
            f"input {bundle.image_size}x{bundle.image_size}",
        ),
        *((name, f"{n:,} parameters") for name, n in counts.items()),
    ]
    _print(rows)
    return 0
