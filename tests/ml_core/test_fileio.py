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
