"""python -m tools.synth: layout, frame counts, resume, one-line errors."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "tools.synth", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.mark.bpy
def test_layout_frame_counts_and_resume(tmp_path):
    pytest.importorskip("bpy")
    pytest.importorskip("cv2")
    from tools.synth.video import count_frames, read_video

    out = tmp_path / "ds"
    args = [
        "--out",
        str(out),
        "--identities",
        "2",
        "--test-identities",
        "1",
        "--clips-per-identity",
        "2",
        "--frames",
        "5",
        "--size",
        "64",
        "--seed",
        "3",
        "--no-progress",
    ]
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    train = sorted(p.name for p in (out / "train").iterdir())
    test = sorted(p.name for p in (out / "test").iterdir())
    assert train == [f"id000{i}_c0{c}.{e}" for i in range(2) for c in range(2) for e in ("mp4", "npz")]
    assert test == [f"id0002_c0{c}.{e}" for c in range(2) for e in ("mp4", "npz")]
    for video in (out / "train").glob("*.mp4"):
        gt = np.load(video.with_suffix(".npz"))
        assert count_frames(video) == 5
        assert gt["curves"].shape == (5, 8) and gt["landmarks"].shape == (5, len(gt["landmark_names"]), 2)
        assert gt["head_rotation"].shape == (5, 3) and float(gt["fps"]) == 25.0
        assert gt["landmark_visible"].shape == gt["landmarks"].shape[:2] and gt["landmark_visible"].dtype == bool
        assert str(gt["identity"]) == video.stem.split("_")[0]
        assert read_video(video).shape == (5, 64, 64, 3)
    # different identities look different; the two clips of one identity differ too
    a = read_video(out / "train" / "id0000_c00.mp4")[0].astype(int)
    b = read_video(out / "train" / "id0001_c00.mp4")[0].astype(int)
    assert np.abs(a - b).mean() > 5
    # resume: nothing is rendered again; a missing .npz makes that clip (only) render again
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    r = _run(*args)  # the summary is the last stdout line (Blender 5.2 logs colour management before it)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("0 clips rendered, 6 already complete")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamp
    (out / "test" / "id0002_c01.npz").unlink()
    r = _run(*args)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("1 clips rendered, 5 already complete")
    assert not [p for p in out.rglob("*") if "partial" in p.name]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--identities", "0"], "--identities must be >= 1"),
        (["--frames", "1"], "--frames must be between"),
        (["--size", "8"], "--size must be between"),
        (["--clips-per-identity", "-2"], "--clips-per-identity"),
        (["--frames", "ten"], "invalid int value"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_one_line(tmp_path, capsys, args, needle):
    from tools.synth.dataset import main

    out = tmp_path / "ds"
    code = main(["--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_out_and_out_is_a_file(tmp_path, capsys):
    from tools.synth.dataset import main

    assert main([]) == 2
    assert "--out" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a folder" in err and err.count("\n") == 1


def test_cli_process_exit_code_and_no_traceback(tmp_path):
    r = _run("--out", str(tmp_path / "x"), "--size", "5000")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "x")


def test_without_opencv_one_line_error(tmp_path, capsys, monkeypatch):
    # the Blender 4.5 venv has no OpenCV: the CLI refuses before rendering anything
    from tools.synth.dataset import main

    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    assert main(["--out", str(tmp_path / "ds"), "--frames", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "OpenCV" in err and err.count("\n") == 1
    assert not (tmp_path / "ds").exists()


@pytest.mark.bpy
def test_ctrl_c_keeps_finished_clips(tmp_path):
    """A real SIGINT while the second clip renders: exit 130 with the one line, the first clip kept whole, nothing
    of the second (no file, no temporary)."""
    pytest.importorskip("bpy")
    pytest.importorskip("cv2")
    out = tmp_path / "ds"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from tools.synth import render as R
        from tools.synth.dataset import main
        real, calls = R._read_png, []
        def read_png(path):
            calls.append(path)
            if len(calls) == 3:  # the second clip's first frame (2 frames a clip)
                os.kill(os.getpid(), signal.SIGINT)
            return real(path)
        R._read_png = read_png
        sys.exit(main(["--out", {str(out)!r}, "--identities", "1", "--test-identities", "0",
                       "--clips-per-identity", "3", "--frames", "2", "--size", "32", "--aa", "OFF", "--no-progress"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "interrupted: finished clips are kept, nothing half-written"
    assert "Traceback" not in proc.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert files == ["train", "train/id0000_c00.mp4", "train/id0000_c00.npz"]


@pytest.mark.bpy
@pytest.mark.parametrize("module,writer", [("render", "save_ground_truth"), ("video", "write_mp4")])
def test_ctrl_c_while_a_clip_is_written_leaves_no_video_without_truth(tmp_path, module, writer):
    """SIGINT as the second clip's ground truth, or its video, is about to be written: never a video without its
    .npz (a training loader lists videos), and a rerun completes the clip."""
    pytest.importorskip("bpy")
    pytest.importorskip("cv2")
    out = tmp_path / "ds"
    args = [
        "--out",
        str(out),
        "--identities",
        "1",
        "--test-identities",
        "0",
        "--clips-per-identity",
        "2",
        "--frames",
        "2",
        "--size",
        "32",
        "--aa",
        "OFF",
        "--no-progress",
    ]
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from tools.synth import {module} as M
        from tools.synth.dataset import main
        real, calls = M.{writer}, []
        def hooked(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return real(*a, **k)
        M.{writer} = hooked
        sys.exit(main({args!r}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130, proc.stderr
    videos = sorted(p.name for p in (out / "train").glob("*.mp4"))
    assert videos == ["id0000_c00.mp4"]
    assert all(v.with_suffix(".npz").is_file() for v in (out / "train").glob("*.mp4"))
    again = subprocess.run(
        [sys.executable, "-m", "tools.synth", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    assert "1 clips rendered, 1 already complete" in again.stdout
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "id0000_c00.mp4",
        "id0000_c00.npz",
        "id0000_c01.mp4",
        "id0000_c01.npz",
    ]
