"""Atomic outputs: whole or nothing, with ordinary permissions."""

from __future__ import annotations

import os

import pytest

from ml_core.fileio import atomic_path


def test_success_moves_into_place_with_umask_mode(tmp_path):
    target = tmp_path / "out.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz"
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    mask = os.umask(0)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failure_leaves_nothing_and_keeps_old_file(tmp_path, exc):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")
    with pytest.raises(exc), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise exc()
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_directories_replace_whole(tmp_path):
    target = tmp_path / "frames"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "preview_0001.png").write_bytes(b"x")
    assert [p.name for p in target.iterdir()] == ["preview_0001.png"]


# ------------------------------------------------------------------ the guarded output path (issue 16)
import subprocess  # noqa: E402
import sys  # noqa: E402

from ml_core.errors import FommError  # noqa: E402
from ml_core.fileio import check_output, clear_stale_partials, partial_name, partial_outputs  # noqa: E402


def test_an_existing_folder_is_never_deleted(tmp_path):
    """A file output onto a folder is refused before the block runs, and the folder keeps its files."""
    target = tmp_path / "m.safetensors"
    target.mkdir()
    (target / "keep").write_text("mine")
    ran = []
    with pytest.raises(FommError, match="is an existing folder"), atomic_path(target) as tmp:
        ran.append(tmp)
    assert not ran and (target / "keep").read_text() == "mine"
    # a folder writer may replace only what it says is its own earlier output
    with pytest.raises(FommError, match="is an existing folder"), atomic_path(target, replace_folder=lambda p: False):
        pass
    assert (target / "keep").read_text() == "mine"
    with atomic_path(target, suffix="", replace_folder=lambda p: True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("x")
    assert [p.name for p in target.iterdir()] == ["new"] and not partial_outputs(target)


def test_partials_are_named_by_process_and_stale_ones_cleared(tmp_path):
    target = tmp_path / "clip.npz"
    mine = partial_name(target)
    assert mine.name.startswith(f".clip.{os.getpid()}-") and mine.name.endswith(".partial.npz")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".clip.{int(dead.stdout)}-deadbeef.partial.npz"
    stale.write_bytes(b"half")
    stale_dir = tmp_path / f".clip.{int(dead.stdout)}-0badf00d.partial"
    stale_dir.mkdir()
    live = tmp_path / f".clip.{os.getppid()}-cafe0123.partial.npz"  # a writer still running
    live.write_bytes(b"busy")
    other = tmp_path / f".clip.v2.{int(dead.stdout)}-deadbeef.partial.npz"  # another output's partial
    other.write_bytes(b"not ours")
    assert set(partial_outputs(target)) == {stale, stale_dir, live}
    with atomic_path(target) as tmp:  # the next run clears what a killed run left
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert not stale.exists() and not stale_dir.exists() and live.exists() and other.exists()
    assert clear_stale_partials(target) == []


def test_check_output_refuses_before_work(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(FommError, match="afile is a file, not a folder"):
        check_output(afile / "x.npz")
    src = tmp_path / "m.safetensors"
    src.write_bytes(b"weights")
    with pytest.raises(FommError, match="would overwrite the input"):
        check_output(tmp_path / "." / "m.safetensors", inputs=[src])
    link = tmp_path / "alias.safetensors"
    link.symlink_to(src)
    with pytest.raises(FommError, match="would overwrite the input"):
        check_output(link, inputs=[src])
    assert check_output(tmp_path / "new" / "deeper" / "out.npz") == tmp_path / "new" / "deeper" / "out.npz"


def test_disk_errors_while_writing_are_one_line(tmp_path):
    """ENOSPC/EFBIG while the block writes: FommError naming the output, nothing left, old file kept."""
    import errno

    target = tmp_path / "c.npz"
    target.write_bytes(b"good")
    full = r"cannot write .*c\.npz: the disk is full; nothing was written"
    with pytest.raises(FommError, match=full), atomic_path(target) as tmp:
        tmp.write_bytes(b"ha")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == b"good" and sorted(tmp_path.iterdir()) == [target]
