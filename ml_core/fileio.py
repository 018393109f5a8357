"""The one guarded output path every writer goes through: outputs appear whole or not at all.

* :func:`atomic_path` yields a partial path beside the output and moves it into place only when the
  writer succeeds. It never deletes a user's folder: an output that is an existing folder is refused
  unless the writer says the folder is its own earlier output (``replace_folder``), and even then the old
  folder is only removed after the new one is in place.
* Partial outputs are named ``.<stem>.<pid>-<random>.partial<suffix>`` (:func:`partial_outputs` finds
  them; this module is the only place that knows the rule). A run killed outright (SIGKILL, power loss)
  leaves its partial behind; the next run writing the same output removes the partials whose process is
  gone (:func:`clear_stale_partials`).
* :func:`check_output` says, before any long work, whether an output can be written at all (folder
  exists or can be made, is writable, the output is not a folder, is not one of the inputs).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ml_core.errors import FommError

__all__ = [
    "atomic_path",
    "check_output",
    "clear_stale_partials",
    "partial_name",
    "partial_outputs",
    "remove_partial_outputs",
    "sha256_file",
    "write_failed",
    "write_npz",
]

_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
_TOKEN = re.compile(r"^(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+$")


def partial_name(path: str | os.PathLike, suffix: str | None = None) -> Path:
    """A fresh partial path for ``path``: ``.<stem>.<pid>-<random>.partial<suffix>`` beside it."""
    path = Path(path)
    if suffix is None:
        suffix = path.suffix
    return path.parent / f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial{suffix}"


def _owner(path: Path, leftover: Path) -> tuple[bool, int | None]:
    """Whether ``leftover`` is a partial of ``path``, and the id of the process that wrote it."""
    head = f".{path.stem}."
    name = leftover.name
    if not name.startswith(head) or ".partial" not in name:
        return False, None
    token, _, rest = name[len(head) :].partition(".partial")
    match = _TOKEN.match(token)
    if match is None or (rest and not rest.startswith(".")):
        return False, None
    pid = match.group("pid")
    return True, None if pid is None else int(pid)


def partial_outputs(path: str | os.PathLike) -> list[Path]:
    """Partial outputs of :func:`atomic_path` for ``path`` lying beside it (any writer, alive or not)."""
    path = Path(path)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    return sorted(p for p in entries if _owner(path, p)[0])


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _remove(leftover: Path) -> None:
    if leftover.is_dir() and not leftover.is_symlink():
        shutil.rmtree(leftover, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            leftover.unlink()


def clear_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove the partials of ``path`` whose writing process no longer exists; returns what was removed.

    Partials of a live process (another run writing the same output right now) are left alone, and so
    are old-style partials without a process id (:func:`remove_partial_outputs` removes those when their
    writer is known to be dead).
    """
    path = Path(path)
    removed = []
    for leftover in partial_outputs(path):
        pid = _owner(path, leftover)[1]
        if pid is not None and not _alive(pid):
            _remove(leftover)
            removed.append(leftover)
    return removed


def remove_partial_outputs(paths: Iterable[str | os.PathLike]) -> None:
    """Remove every partial of ``paths`` (for a caller that knows their writer has stopped)."""
    for path in paths:
        for leftover in partial_outputs(path):
            _remove(leftover)


def _describe_os_error(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if exc.errno == errno.EFBIG:
        return "the file is too large for this disk or account (file size limit)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "the disk is read-only"
    return exc.strerror or str(exc)


def write_failed(path: str | os.PathLike, exc: OSError) -> FommError:
    """The one-line error for an output that could not be written (disk full, read-only...)."""
    return FommError(f"cannot write {path}: {_describe_os_error(exc)}; nothing was written")


def check_output(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    folder_ok: Callable[[Path], bool] | None = None,
) -> Path:
    """Refuse, before any long work, an output that cannot be written; returns ``path`` as a Path.

    Refused: an output that is an existing folder (unless ``folder_ok(path)`` says it is the writer's own
    earlier output), an output equal to one of ``inputs`` (same file, by resolved path or inode), a
    parent that is a file, or a folder the user cannot write to.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink() and (folder_ok is None or not folder_ok(path)):
        raise FommError(f"the output {path} is an existing folder: give a new file name (nothing is deleted)")
    for given in inputs:
        if given is None:
            continue
        src = Path(given)
        with contextlib.suppress(OSError):
            if path.exists() and (path.resolve() == src.resolve() or os.path.samefile(path, src)):
                raise FommError(f"the output {path} would overwrite the input {src}: choose another output path")
    parent = path.parent
    ancestor = parent
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise FommError(f"cannot write {path}: {ancestor} is a file, not a folder")
    if ancestor.is_dir() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise FommError(f"cannot write {path}: the folder {ancestor} is not writable (permission denied)")
    return path


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike,
    *,
    suffix: str | None = None,
    replace_folder: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield a partial path beside ``path``; move it onto ``path`` only if the block succeeds.

    Works for files and folders (the block creates whatever it wants at the yielded path). On any
    exception, KeyboardInterrupt included, the partial is removed and ``path`` is left untouched.
    ``suffix`` keeps the extension some writers dispatch on (e.g. ``.mp4``, ``.npz``). An existing folder
    at ``path`` is refused with a FommError unless ``replace_folder(path)`` is true (the writer's own
    earlier output); a file never replaces a folder. Stale partials of ``path`` are cleared first.
    """
    path = check_output(path, folder_ok=replace_folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_failed(path, exc) from None
    clear_stale_partials(path)
    tmp = partial_name(path, suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"writer produced nothing at {tmp}")
        _commit(tmp, path, replace_folder)
    except OSError as exc:
        _remove(tmp)
        if exc.errno in _DISK_ERRORS:  # the disk filled up (or a size limit hit) while writing
            raise write_failed(path, exc) from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def _commit(tmp: Path, path: Path, replace_folder: Callable[[Path], bool] | None) -> None:
    if tmp.is_file():  # give it the mode a plain open() would have
        os.chmod(tmp, 0o666 & ~_umask())
    old_folder = path.is_dir() and not path.is_symlink()
    if old_folder and (replace_folder is None or not replace_folder(path) or not tmp.is_dir()):
        raise FommError(f"the output {path} is an existing folder: give a new file name (nothing is deleted)")
    try:
        if old_folder:  # move the old folder aside, the new one in, then drop the old one
            aside = partial_name(path, "")
            os.replace(path, aside)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(aside, path)
                raise
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise write_failed(path, exc) from None


def write_npz(path: str | os.PathLike, arrays: dict[str, Any]) -> Path:
    """Write ``arrays`` as an ``.npz`` through :func:`atomic_path`, built in memory first: a write that
    fails (full disk) then fails in one place, with nothing half-written and no zip left to close."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(buf.getbuffer())
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
