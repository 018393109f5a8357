"""Command-line entry point: ``python -m ml_core {convert,extract,animate,train,worker,...}``.

Each sub-command lives in ``ml_core/commands/<name>.py`` and defines
``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``.
Expected failures (:class:`~ml_core.errors.FommError`) print ``error: <one line>`` to stderr and exit 2;
Ctrl-C exits 130. Writers use :func:`ml_core.fileio.atomic_path`, so neither leaves partial output.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ml_core.errors import FommError

COMMANDS = ("convert", "info", "extract", "animate", "train", "worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml_core", description="First Order Motion Model core.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ml_core.commands.{name}")
        except ModuleNotFoundError as exc:  # a command still being written
            if exc.name == f"ml_core.commands.{name}":
                continue
            raise
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except FommError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
