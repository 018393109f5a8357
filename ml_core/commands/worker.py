"""``python -m ml_core worker JOB.json|-``: run one add-on job, JSON-lines progress on stdout."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "worker",
        help="run one job for the Blender add-on (extract | animate | detect-images), JSON lines on stdout",
        description="Run one job described by a JSON file (or '-': the first line of stdin) and report "
        "progress, result or error as JSON lines on stdout. See ml_core/worker.py for the protocol.",
    )
    p.add_argument("job", help="job file (JSON), or '-' to read the job from the first line of stdin")
    p.add_argument(
        "--watch-stdin",
        action="store_true",
        help="cancel when stdin sends a 'cancel' line or closes (how the add-on stops the worker)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from ml_core.worker import serve

    return serve(args.job, watch_stdin=args.watch_stdin)
