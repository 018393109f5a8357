"""``python -m ml_core extract``: a clip and a summary line on success; on bad input exit 2, one line on
stderr, no traceback, no output file; Ctrl-C exits 130 and leaves nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import yaml

from ml_core.cli import main
from ml_core.clip import load_clip
from ml_core.video import write_video
from tests.conftest import REPO, TINY_CKPT, TINY_YAML
from tests.ml_core.avmedia import write_wav


def frames(n: int, w: int = 80, h: int = 60) -> list[np.ndarray]:
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 50, np.uint8)
        cv2.circle(f, (w // 2 + i, h // 2), 15, (220, 170, 120), -1)
        out.append(f)
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_media")
    cfg = yaml.safe_load(TINY_YAML.read_text())
    cfg["dataset_params"] = {"frame_shape": [64, 64, 3]}
    (d / "tiny64.yaml").write_text(yaml.safe_dump(cfg))
    write_video(d / "drive.mp4", frames(12), fps=25)
    data = (d / "drive.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("shopping list\n" * 20)
    write_wav(d / "voice.wav")
    return d


def model_args(media) -> list[str]:
    return ["--checkpoint", str(TINY_CKPT), "--config", str(media / "tiny64.yaml")]


def test_extract_writes_a_clip(media, tmp_path, capfd):
    out = tmp_path / "clip.npz"
    code = main(
        [
            "extract",
            str(media / "drive.mp4"),
            "-o",
            str(out),
            "--crop",
            "full",
            "--device",
            "cpu",
            "--smooth",
            "min_cutoff=1,beta=10",
            "--batch",
            "5",
            *model_args(media),
        ]
    )
    captured = capfd.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {out}: 12 frames (0-11) at 25 fps, 5 keypoints")
    clip = load_clip(out)
    assert clip.num_frames == 12 and clip.image_size == 64 and clip.smoothing["beta"] == 10.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npz"]


def test_selection_and_reference(media, tmp_path, capfd):
    out = tmp_path / "clip.npz"
    code = main(
        [
            "extract",
            str(media / "drive.mp4"),
            "-o",
            str(out),
            "--crop",
            "0,0,60",
            "--start",
            "2",
            "--end",
            "11",
            "--step",
            "2",
            "--reference",
            "6",
            "--bf16",
            *model_args(media),
        ]
    )
    assert code == 0, capfd.readouterr().err
    clip = load_clip(out)
    assert clip.frame_indices.tolist() == [2, 4, 6, 8, 10] and clip.reference_frame == 2
    assert clip.crop_box == (0, 0, 60) and clip.crop_mode == "box"


BAD = {
    "missing video": (["{m}/nope.mp4"], "video not found"),
    "zero-byte video": (["{m}/empty.mp4"], "empty (0 bytes)"),
    "text named .mp4": (["{m}/notes.mp4"], "as a video"),
    "truncated mp4": (["{m}/cut.mp4"], "damaged or truncated"),
    "no output": (["{m}/drive.mp4", "-o", ""], "-o CLIP.npz"),
    "output not npz": (["{m}/drive.mp4", "-o", "{t}/clip.txt"], ".npz"),
    "output is a folder": (["{m}/drive.mp4", "-o", "{t}/dir.npz"], "folder"),
    "bad crop": (["{m}/drive.mp4", "--crop", "10,20"], "X,Y,SIZE"),
    "crop outside": (["{m}/drive.mp4", "--crop", "500,500,20"], "outside the 80x60 frame"),
    "bad batch": (["{m}/drive.mp4", "--batch", "many"], "--batch must be a whole number"),
    "zero step": (["{m}/drive.mp4", "--step", "0"], "--step must be 1 or more"),
    "start past end": (["{m}/drive.mp4", "--start", "40"], "has 12 decodable frames"),
    "end before start": (["{m}/drive.mp4", "--start", "5", "--end", "3"], "after the start frame"),
    "bad smooth": (["{m}/drive.mp4", "--smooth", "speed=3"], "bad --smooth item"),
    "bad reference": (["{m}/drive.mp4", "--reference", "first"], "--reference must be a whole number"),
    "reference not extracted": (["{m}/drive.mp4", "--step", "2", "--reference", "3"], "not among the extracted"),
    "bad device": (["{m}/drive.mp4", "--device", "tpu"], "unknown device"),
    "missing checkpoint": (["{m}/drive.mp4", "--checkpoint", "{m}/none.pth.tar"], "not found"),
    "output under a file": (["{m}/drive.mp4", "-o", "{m}/drive.mp4/x.npz"], "drive.mp4 is a file, not a folder"),
    "huge batch": (["{m}/drive.mp4", "--batch", "100000000"], "batch size must be a whole number from 1 to 4096"),
    "huge crop": (["{m}/drive.mp4", "--crop", "0,0,2000000000"], "more than twice the 80x60 frame's longest side"),
    "audio only": (["{m}/voice.wav"], "voice.wav holds only audio (no video stream)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_exit_2_no_file(case, media, tmp_path, capfd):
    argv, msg = BAD[case]
    (tmp_path / "dir.npz").mkdir()
    argv = [a.format(m=media, t=tmp_path) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "clip.npz")]
    if "--checkpoint" not in argv:
        argv += ["--checkpoint", str(TINY_CKPT)]
    code = main(
        ["extract", *argv, "--config", str(media / "tiny64.yaml"), "--crop", "full"]
        if "--crop" not in argv
        else ["extract", *argv, "--config", str(media / "tiny64.yaml")]
    )
    _assert_one_line_error(code, capfd.readouterr(), msg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.npz"]  # nothing written, no temporaries


def _assert_one_line_error(code: int, captured, msg: str) -> None:
    """Exit 2, one ``error: `` line on stderr holding ``msg``, nothing on stdout, no traceback."""
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and msg in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""


def test_output_would_overwrite_the_input_video(media, tmp_path, capfd):
    video = tmp_path / "take.npz"  # a video named like a clip, given as its own output
    video.write_bytes((media / "drive.mp4").read_bytes())
    before = video.read_bytes()
    code = main(["extract", str(video), "-o", str(video), "--crop", "full", *model_args(media)])
    msg = "the output clip would overwrite the input video: choose another -o"
    _assert_one_line_error(code, capfd.readouterr(), msg)
    assert video.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["take.npz"]


@pytest.mark.parametrize(
    ("device", "msg"),
    [
        ("cuda", "device 'cuda' was asked for but this PyTorch build has no usable CUDA GPU: use --device cpu"),
        ("mps", "device 'mps' was asked for but Apple Metal is not available here: use --device cpu"),
    ],
)
def test_device_not_available(device, msg, media, tmp_path, capfd):
    import torch

    mps = getattr(torch.backends, "mps", None)
    if torch.cuda.is_available() if device == "cuda" else (mps is not None and mps.is_available()):
        pytest.skip(f"this machine has {device}")
    code = main(
        [
            "extract",
            str(media / "drive.mp4"),
            "-o",
            str(tmp_path / "clip.npz"),
            "--crop",
            "full",
            "--device",
            device,
            *model_args(media),
        ]
    )
    _assert_one_line_error(code, capfd.readouterr(), msg)
    assert list(tmp_path.iterdir()) == []


def _extract_signalled(media, out, signal_name: str) -> subprocess.CompletedProcess:
    """``extract`` in a real process that sends itself ``signal_name`` while a batch is in the keypoint detector."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import ml_core.extraction as ex
        from ml_core.cli import main
        real = ex._infer
        def infer(*a, **k):
            os.kill(os.getpid(), signal.{signal_name})
            return real(*a, **k)
        ex._infer = infer
        sys.exit(main(["extract", {str(media / "drive.mp4")!r}, "-o", {str(out)!r}, "--crop", "full",
                       "--batch", "2", "--checkpoint", {str(TINY_CKPT)!r},
                       "--config", {str(media / "tiny64.yaml")!r}]))
        """
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_subprocess_end_to_end_and_ctrl_c(media, tmp_path):
    """A real process: the summary on success; SIGINT during inference exits 130 and leaves nothing."""
    out = tmp_path / "ok.npz"
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml_core",
            "extract",
            str(media / "drive.mp4"),
            "-o",
            str(out),
            "--crop",
            "full",
            *model_args(media),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("wrote ") and ok.stderr == "", ok.stderr
    out.unlink()
    # Deliver a real SIGINT to the process while a batch is in the keypoint detector.
    proc = _extract_signalled(media, out, "SIGINT")
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["interrupted: nothing was written"]
    assert list(tmp_path.iterdir()) == []


def test_sigterm_is_handled_like_ctrl_c(media, tmp_path):
    """What a farm scheduler sends: exit 130 with one line, no partial left (it used to exit 143 silently)."""
    out = tmp_path / "c.npz"
    proc = _extract_signalled(media, out, "SIGTERM")
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["terminated: nothing was written"]
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_one_line_and_keeps_the_old_clip(media, tmp_path):
    """Writing the clip fails (a file size limit: EFBIG, as ENOSPC on a full disk): one line, old clip kept."""
    out = tmp_path / "c.npz"
    out.write_bytes(b"PK\x03\x04 an earlier clip")
    before = out.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        from ml_core.cli import main
        sys.exit(main(["extract", {str(media / "drive.mp4")!r}, "-o", {str(out)!r}, "--crop", "full",
                       "--checkpoint", {str(TINY_CKPT)!r}, "--config", {str(media / "tiny64.yaml")!r}]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot write {out}: the file is too large for this disk or account (file size limit); "
        "nothing was written"
    ]
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_file_name_that_is_not_utf8(media, tmp_path, capfd):
    """It crashed OpenCV (SIGSEGV; in Blender 'worker killed by signal 11')."""
    import os

    video = tmp_path / os.fsdecode(b"v\xff.mp4")
    video.write_bytes((media / "drive.mp4").read_bytes())
    out = tmp_path / os.fsdecode(b"c\xff.npz")
    code = main(["extract", str(video), "-o", str(out), "--crop", "full", *model_args(media)])
    assert code == 0, capfd.readouterr().err
    assert load_clip(out).num_frames == 12
