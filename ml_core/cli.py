"""Command-line entry point: ``python -m ml_core {convert,extract,animate,train,worker,...}``.

Each sub-command lives in ``ml_core/commands/<name>.py`` and defines
``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``.
Expected failures (:class:`~ml_core.errors.FommError`) print ``error: <one line>`` to stderr and exit 2;
Ctrl-C and SIGTERM (what a farm scheduler sends) both exit 130 with one line. Writers use
:func:`ml_core.fileio.atomic_path`, so neither leaves partial output.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C (partial outputs are removed)."""


_terminating = threading.Event()


def _on_sigterm(signum: int, frame: object) -> None:  # noqa: ARG001 - signal handler signature
    if _terminating.is_set():
        return  # a second SIGTERM must not interrupt the clean-up the first one started
    _terminating.set()
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    old = None
    if threading.current_thread() is threading.main_thread():
        _terminating.clear()
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args._run(args) or 0)
    except FommError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"{what}: nothing was written", file=sys.stderr)
        return 130
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
