"""``python -m ml_core convert IN.pth.tar OUT.safetensors [--config CFG]``."""

from __future__ import annotations

import argparse

from ml_core.errors import FommError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "convert",
        help="convert an authors' .pth.tar checkpoint to safetensors (no code runs)",
        description="Convert an authors' checkpoint (read with torch.load(weights_only=True)) to the "
        "project's safetensors format with its configuration embedded.",
    )
    p.add_argument("checkpoint", help="input: an authors' .pth.tar (or a .safetensors to re-write)")
    p.add_argument("output", help="output .safetensors file")
    p.add_argument("--config", help="YAML/JSON config or shipped name (default: detected from tensor shapes)")
    p.add_argument("--no-discriminator", action="store_true", help="drop the training-only discriminator")
    return p


def run(args: argparse.Namespace) -> int:
    from ml_core.model import convert

    if not str(args.output).endswith(".safetensors"):
        raise FommError(f"output must end in .safetensors: {args.output}")
    path, name = convert(args.checkpoint, args.output, args.config, keep_discriminator=not args.no_discriminator)
    print(f"wrote {path} (config: {name})")
    return 0
