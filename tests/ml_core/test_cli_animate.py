"""``python -m ml_core animate``: outputs and a summary line on success; on bad input exit 2, one line on stderr,
no traceback, nothing written; Ctrl-C exits 130 and leaves nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import yaml

from ml_core.cli import main
from ml_core.clip import MotionClip, load_clip
from ml_core.extraction import extract
from ml_core.video import VideoReader, write_video
from tests.conftest import REPO, TINY_CKPT, TINY_YAML
from tests.ml_core.test_animation import driving_frames, source_image


@pytest.fixture(scope="module")
def media(tmp_path_factory, tiny_bundle):
    d = tmp_path_factory.mktemp("cli_animate_media")
    cfg = yaml.safe_load(TINY_YAML.read_text())
    cfg["dataset_params"] = {"frame_shape": [64, 64, 3]}
    (d / "tiny64.yaml").write_text(yaml.safe_dump(cfg))
    write_video(d / "drive.mp4", driving_frames(8), fps=24)
    clip = extract(d / "drive.mp4", model=tiny_bundle, crop="full")
    clip.save(d / "clip.npz")
    k = 3
    MotionClip(
        values=clip.values[:, :k],
        jacobians=clip.jacobians[:, :k],
        fps=clip.fps,
        frame_indices=clip.frame_indices,
        reference_frame=0,
        crop_box=clip.crop_box,
        video_size=clip.video_size,
        num_kp=k,
        image_size=64,
        config_hash="other",
        checkpoint_hash="other",
    ).save(d / "k3.npz")
    data = dict(np.load(d / "clip.npz"))
    for key in ("values", "jacobians", "frame_indices"):
        data[key] = data[key][:0]
    np.savez(d / "empty.npz", **data)
    t = clip.num_frames
    MotionClip(
        values=clip.values,
        jacobians=np.broadcast_to(np.eye(2, dtype=np.float32), (t, 5, 2, 2)).copy(),
        fps=clip.fps,
        frame_indices=clip.frame_indices,
        reference_frame=clip.reference_frame,
        crop_box=clip.crop_box,
        video_size=clip.video_size,
        num_kp=5,
        image_size=64,
        config_hash=clip.config_hash,
        checkpoint_hash=clip.checkpoint_hash,
        has_jacobians=False,
    ).save(d / "nojac.npz")  # as a model without Jacobians extracts it
    cv2.imwrite(str(d / "source.png"), cv2.cvtColor(source_image(120, 80), cv2.COLOR_RGB2BGR))
    (d / "source.txt.png").write_text("not a picture\n")
    return d


def model_args(media) -> list[str]:
    return ["--checkpoint", str(TINY_CKPT), "--config", str(media / "tiny64.yaml"), "--device", "cpu"]


def listing(path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_animate_writes_video_frames_and_review(media, tmp_path, capfd):
    code = main(
        [
            "animate",
            str(media / "source.png"),
            str(media / "clip.npz"),
            "-o",
            str(tmp_path / "p.mp4"),
            "-o",
            f"{tmp_path / 'seq'}/",
            "--review",
            str(tmp_path / "r.mp4"),
            "--batch",
            "3",
            *model_args(media),
        ]
    )
    captured = capfd.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wrote ") and ": 8 frames 64x64 at 24 fps" in lines[0]
    assert "warning" not in captured.err
    assert listing(tmp_path) == ["p.mp4", "r.mp4", "seq"]
    assert listing(tmp_path / "seq") == [f"preview_{i:04d}.png" for i in range(1, 9)]
    for name, width in (("p.mp4", 64), ("r.mp4", 128)):
        with VideoReader(tmp_path / name) as r:
            r.read_all()
            assert r.frames_decoded == 8 and r.size == (width, 64) and r.fps == pytest.approx(24.0)


def test_animate_from_a_video_absolute_bf16_fps(media, tmp_path, capfd):
    code = main(
        [
            "animate",
            str(media / "source.png"),
            str(media / "drive.mp4"),
            "-o",
            str(tmp_path / "v.avi"),
            "--driving-crop",
            "full",
            "--mode",
            "absolute",
            "--bf16",
            "--fps",
            "10",
            "--crop",
            "auto",
            *model_args(media),
        ]
    )
    captured = capfd.readouterr()
    assert code == 0, captured.err
    assert ": 8 frames 64x64 at 10 fps" in captured.out
    with VideoReader(tmp_path / "v.avi") as r:
        r.read_all()
        assert r.frames_decoded == 8 and r.fps == pytest.approx(10.0)


def test_other_checkpoint_warns_strict_refuses(media, tmp_path, capfd):
    clip = load_clip(media / "clip.npz")
    clip.checkpoint_hash = "0000000000000000"
    clip.save(tmp_path / "c.npz")
    code = main(
        [
            "animate",
            str(media / "source.png"),
            str(tmp_path / "c.npz"),
            "-o",
            str(tmp_path / "w.mp4"),
            *model_args(media),
        ]
    )
    captured = capfd.readouterr()
    assert code == 0 and captured.err.strip().startswith("warning: the motion clip was extracted with another")
    code = main(
        [
            "animate",
            str(media / "source.png"),
            str(tmp_path / "c.npz"),
            "-o",
            str(tmp_path / "s.mp4"),
            "--strict",
            *model_args(media),
        ]
    )
    assert code == 2 and capfd.readouterr().err.count("\n") == 1
    assert listing(tmp_path) == ["c.npz", "w.mp4"]


BAD = {
    "unreadable image": (["{m}/source.txt.png", "{m}/clip.npz"], "as an image"),
    "missing image": (["{m}/nope.png", "{m}/clip.npz"], "image not found"),
    "keypoint count": (["{m}/source.png", "{m}/k3.npz"], "has 3 keypoints but the model has 5"),
    "empty clip": (["{m}/source.png", "{m}/empty.npz"], "T, K >= 1"),
    "missing clip": (["{m}/source.png", "{m}/nope.npz"], "not found"),
    "not a video": (["{m}/source.png", "{m}/source.txt.png"], "as a video"),
    "no output": (["{m}/source.png", "{m}/clip.npz", "--no-o"], "-o OUT.mp4"),
    "bad output": (["{m}/source.png", "{m}/clip.npz", "-o", "{t}/out.gif"], "give a folder (PNG frames)"),
    "busy folder": (["{m}/source.png", "{m}/clip.npz", "-o", "{t}/busy/"], "already holds other files"),
    "overwrite input": (["{m}/source.png", "{m}/clip.npz", "-o", "{m}/source.png"], "overwrite an input"),
    "bad review": (["{m}/source.png", "{m}/clip.npz", "--review", "{t}/r.png"], "review must be a video"),
    "same output twice": (
        ["{m}/source.png", "{m}/clip.npz", "-o", "{t}/a.mp4", "-o", "{t}/a.mp4"],
        "the same output path is given twice: give each output its own path",
    ),
    "folder as video name": (
        ["{m}/source.png", "{m}/clip.npz", "-o", "{t}/taken.mp4"],
        "taken.mp4 is a folder: give a video file name or drop the extension",
    ),
    "file as frames folder": (
        ["{m}/source.png", "{m}/clip.npz", "-o", "{t}/frames"],
        "frames is a file: give a folder for the PNG frames",
    ),
    "clip without jacobians": (
        ["{m}/source.png", "{m}/nojac.npz"],
        "the motion clip has no Jacobians but the model uses them",
    ),
    "bad batch": (["{m}/source.png", "{m}/clip.npz", "--batch", "0"], "--batch must be 1 or more"),
    "bad fps": (["{m}/source.png", "{m}/clip.npz", "--fps", "fast"], "--fps must be a number"),
    "bad crop": (["{m}/source.png", "{m}/clip.npz", "--crop", "1,2"], "X,Y,SIZE"),
    "crop outside": (["{m}/source.png", "{m}/clip.npz", "--crop", "500,0,10"], "outside the 120x80 frame"),
    "bad device": (["{m}/source.png", "{m}/clip.npz", "--device", "tpu"], "unknown device"),
    "missing checkpoint": (["{m}/source.png", "{m}/clip.npz", "--checkpoint", "{m}/none.pth"], "not found"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_exit_2_nothing_written(case, media, tmp_path, capfd):
    argv, msg = BAD[case]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    (tmp_path / "taken.mp4").mkdir()  # a folder with a video's name
    (tmp_path / "frames").write_text("mine")  # a file where a frame folder would go
    argv = [a.format(m=media, t=tmp_path) for a in argv]
    if "--no-o" in argv:
        argv.remove("--no-o")
    elif "-o" not in argv:
        argv += ["-o", str(tmp_path / "out.mp4")]
    extra = model_args(media)
    if "--checkpoint" in argv:
        extra = extra[2:]
    if "--device" in argv:
        extra = extra[:-2]
    media_before = listing(media)
    code = main(["animate", *argv, *extra])
    captured = capfd.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and msg in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert listing(tmp_path) == ["busy", "frames", "taken.mp4"] and listing(tmp_path / "busy") == ["keep.txt"]
    assert listing(tmp_path / "taken.mp4") == [] and (tmp_path / "frames").read_text() == "mine"
    assert listing(media) == media_before


def _animate_signalled(media, tmp_path, signal_name: str, extra: list[str]) -> subprocess.CompletedProcess:
    """``animate`` (to x.mp4 and seq/ in ``tmp_path``, plus ``extra`` arguments) in a real process that sends itself
    ``signal_name`` once the second batch is rendered (the first is on disk in the temporaries by then)."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import ml_core.animation as an
        from ml_core.cli import main
        real, calls = an._to_uint8, []
        def to_uint8(frames):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.{signal_name})
            return real(frames)
        an._to_uint8 = to_uint8
        sys.exit(main(["animate", {str(media / "source.png")!r}, {str(media / "clip.npz")!r},
                       "-o", {str(tmp_path / "x.mp4")!r}, "-o", {str(tmp_path / "seq")!r},
                       *{extra!r}, "--batch", "2", *{model_args(media)!r}]))
        """
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_subprocess_end_to_end_and_ctrl_c(media, tmp_path):
    """A real process: the summary on success; SIGINT after frames were written exits 130 and leaves nothing."""
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml_core",
            "animate",
            str(media / "source.png"),
            str(media / "clip.npz"),
            "-o",
            str(tmp_path / "ok.mp4"),
            *model_args(media),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("wrote ") and ok.stderr == "", ok.stderr
    (tmp_path / "ok.mp4").unlink()
    # A real SIGINT once the second batch is rendered (the first is on disk in the temporaries by then).
    proc = _animate_signalled(media, tmp_path, "SIGINT", ["--review", str(tmp_path / "r.mp4")])
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["interrupted: nothing was written"]
    assert list(tmp_path.iterdir()) == []


def test_sigterm_like_ctrl_c_and_stale_partials_cleared(media, tmp_path):
    """SIGTERM (a farm scheduler) used to exit 143 leaving .partial.mp4 files and a .partial/ folder of PNGs;
    what a SIGKILLed run left was never cleaned. Now: exit 130, one line, and nothing left, stale ones included."""
    dead = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )
    (tmp_path / f".x.{dead}-0123abcd.partial.mp4").write_bytes(b"killed run")
    (tmp_path / f".seq.{dead}-0123abcd.partial").mkdir()
    (tmp_path / f".seq.{dead}-0123abcd.partial" / "preview_0001.png").write_bytes(b"png")
    proc = _animate_signalled(media, tmp_path, "SIGTERM", [])
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["terminated: nothing was written"]
    assert list(tmp_path.iterdir()) == []


def test_full_disk_keeps_the_earlier_video(media, tmp_path):
    """Issue 16, item 2: on a full disk `animate -o a.mp4` replaced a good a.mp4 with a broken 12 KB file, printed
    'wrote ...' and exited 0. Here a file size limit (EFBIG, as ENOSPC) hits while the video is written."""
    good = tmp_path / "a.mp4"
    good.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)  # an earlier result, 10 KB
    before = good.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        from ml_core.cli import main
        sys.exit(main(["animate", {str(media / "source.png")!r}, {str(media / "clip.npz")!r},
                       "-o", {str(good)!r}, *{model_args(media)!r}]))
        """
    )
    proc = subprocess.run([sys.executable, "-B", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot write {good}: the file is too large for this disk or account (file size limit); "
        "nothing was written"
    ]
    assert proc.stdout == "" and good.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["a.mp4"]
