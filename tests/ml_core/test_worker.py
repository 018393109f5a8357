"""The worker process: JSON-lines protocol, one-line errors, exit codes (python -m ml_core worker)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml_core.errors import FommError
from ml_core.worker import EventWriter, parse_job, read_job, serve, square_frame

TINY_CKPT = Path(__file__).resolve().parents[1] / "data" / "fomm_reference" / "tiny-cpk.pth.tar"


def _run(job_text: str | None, *args: str, job_arg: str = "-") -> tuple[int, list[dict], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "ml_core", "worker", job_arg, *args],
        input=job_text,
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every stdout line is JSON
    return proc.returncode, events, proc.stderr


def test_probe_reports_versions():
    rc, events, _ = _run('{"kind": "probe"}\n')
    assert rc == 0
    assert events[0]["event"] == "start" and events[0]["kind"] == "probe"
    result = events[-1]
    assert result["event"] == "result" and result["kind"] == "probe"
    assert result["torch"] and "cpu" in result["devices"] and result["ml_core"]
    assert result["executable"] == sys.executable  # Check Worker names the interpreter to fix


def test_job_from_file(tmp_path):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"kind": "probe"}))
    rc, events, _ = _run(None, job_arg=str(job))
    assert rc == 0 and events[-1]["event"] == "result"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not json\n", "not valid JSON"),
        ("[1, 2]\n", "must be a JSON object"),
        ('{"kind": "bake"}\n', "unknown worker job kind"),
        ('{"kind": "extract", "video": "x.mp4"}\n', "missing output"),
        ('{"kind": "extract", "video": "/nonexistent/x.mp4", "output": "/tmp/x.npz"}\n', "video not found"),
        ("\n", "no job on stdin"),
    ],
)
def test_bad_jobs_give_one_line_errors(text, needle):
    rc, events, stderr = _run(text)
    assert rc == 2
    assert events[-1]["event"] == "error" and needle in events[-1]["message"]
    assert "\n" not in events[-1]["message"]
    assert "Traceback" not in stderr


def test_detect_images_job_whose_images_is_not_a_list(tmp_path):
    out = tmp_path / "detections.npz"
    job = {"kind": "detect-images", "images": str(tmp_path / "neutral.png"), "output": str(out)}
    rc, events, stderr = _run(json.dumps(job) + "\n")
    assert rc == 2 and "Traceback" not in stderr
    assert events[-1]["event"] == "error"  # the value is shown cut to 60 characters
    assert events[-1]["message"].startswith("the detect-images job's images must be a list of strings, got \"/")
    assert list(tmp_path.iterdir()) == []


def test_missing_job_file(tmp_path):
    rc, events, _ = _run(None, job_arg=str(tmp_path / "nope.json"))
    assert rc == 2 and "job file not found" in events[-1]["message"]


def test_serve_in_process_with_stream(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"kind": "animate", "source": "a.png"}\n'))
    rc = serve("-", emit=EventWriter(out))
    assert rc == 2
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[-1] == {"event": "error", "message": "the animate job is missing clip, output"}


def test_parse_and_read_job(tmp_path):
    assert parse_job('{"kind": "detect-images", "images": ["a.png"], "output": "o.npz"}').KIND == "detect-images"
    with pytest.raises(FommError, match="options must be a JSON object"):
        parse_job('{"kind": "probe", "options": 3}')
    with pytest.raises(FommError, match="no job on stdin"):
        read_job("-", io.StringIO(""))


def test_square_frame_pads_never_stretches():
    import numpy as np

    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # left half white
    sq = square_frame(img, 16)
    assert sq.shape == (16, 16, 3)
    # 40 wide, padded to 40x40 with black rows above and below: the left half stays white, right half black
    assert sq[8, 2].min() > 200 and sq[8, 13].max() < 50
    assert sq[0].max() == 0 and sq[-1].max() == 0  # padding, not the image's edge rows repeated


def test_calibration_renders_are_framed_like_video_frames():
    """One rule for both: a render goes through the crop a video frame gets with crop 'full'."""
    import numpy as np

    from ml_core.framing import crop_square, full_frame_box

    rng = np.random.default_rng(0)
    for h, w, size in ((48, 80, 32), (80, 48, 64), (64, 64, 32), (30, 50, 64)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(square_frame(img, size), crop_square(img, full_frame_box(w, h), size))


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    import cv2
    import numpy as np

    path = tmp_path_factory.mktemp("worker") / "long.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 64))
    for i in range(1000):
        img = np.full((64, 64, 3), 128, np.uint8)
        cv2.circle(img, (32 + int(10 * np.sin(i / 10)), 32), 12, (200, 100, 50), -1)
        w.write(img)
    w.release()
    return path


def _extract_job_running(tmp_path, long_video, tiny_config) -> tuple[subprocess.Popen, list[dict]]:
    """A worker (watching stdin) running an extract job of the long video, once its first batch is done."""
    job = {
        "kind": "extract",
        "video": str(long_video),
        "output": str(tmp_path / "clip.npz"),
        "checkpoint": str(TINY_CKPT),
        "config": tiny_config,
        "options": {"crop": "full"},
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_core", "worker", "-", "--watch-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.flush()
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "progress" and events[-1]["done"]:
            break
    return proc, events


@pytest.mark.parametrize("how", ["sigterm", "stdin"])
def test_cancel_mid_job_leaves_nothing(tmp_path, long_video, tiny_config, how):
    import signal

    proc, events = _extract_job_running(tmp_path, long_video, tiny_config)
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.stdin.write("cancel\n")
        proc.stdin.flush()
    rest, err = proc.communicate(timeout=60)
    events += [json.loads(x) for x in rest.splitlines()]
    assert proc.returncode == 130, err[-2000:]
    assert events[-1] == {"event": "cancelled"}
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_cancel_twice_still_ends_cancelled(tmp_path, long_video, tiny_config):
    """A cancel line, then SIGTERM and stdin closing while the first unwinds (Cancel pressed, then Blender quitting):
    the later ones are ignored, the job ends cancelled (exit 130) with nothing written, never "internal error"."""
    import signal
    import time

    for attempt in range(4):
        proc, events = _extract_job_running(tmp_path, long_video, tiny_config)
        proc.stdin.write("cancel\n")  # the add-on's Cancel
        proc.stdin.flush()
        time.sleep(0.002 * attempt)
        proc.send_signal(signal.SIGTERM)  # Blender quitting
        proc.stdin.close()
        rest = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait(timeout=60)
        events += [json.loads(x) for x in rest.splitlines()]
        # 130: cancelled; -SIGTERM: the SIGTERM landed after the job had reported "cancelled" and the process was
        # already on its way out (the add-on reads the event, not the exit code). Never 1 (internal error).
        assert proc.returncode in (130, -signal.SIGTERM), err[-2000:]
        assert events[-1] == {"event": "cancelled"}
        assert "Traceback" not in err
        assert list(tmp_path.iterdir()) == []
