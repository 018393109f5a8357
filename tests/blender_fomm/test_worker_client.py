"""The worker client: progress events, cancel and a killed worker leave nothing behind, one-line errors."""

from __future__ import annotations

import os
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import bpy
import numpy as np
import pytest
from bfomm_helpers import worker_python

from blender_fomm import pipeline
from blender_fomm.worker_client import (
    CANCELLED,
    DONE,
    FAILED,
    RUNNING,
    WorkerJob,
    default_python,
    partial_outputs,
    remove_partial_outputs,
    run_job,
)
from ml_core.clip import load_clip
from ml_core.errors import FommError


def _model() -> dict:
    return {"checkpoint": os.environ["FOMM_CHECKPOINT"], "config": os.environ["FOMM_CONFIG"], "device": "cpu"}


@pytest.fixture(scope="module")
def long_video(addon) -> Path:
    """1000 frames of a moving disc (64 px): long enough to stop mid-way."""
    out = addon / "long" / "long.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    code = textwrap.dedent(
        f"""
        import cv2, numpy as np
        w = cv2.VideoWriter({str(out)!r}, cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 64))
        for i in range(1000):
            img = np.full((64, 64, 3), 128, np.uint8)
            cv2.circle(img, (32 + int(10 * np.sin(i / 10)), 32), 12, (200, 100, 50), -1)
            w.write(img)
        w.release()
        """
    )
    subprocess.run([worker_python(), "-c", code], check=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def long_clip(addon, motion_clip) -> Path:
    """The short clip repeated to 800 samples (written here, numpy only)."""
    clip = load_clip(motion_clip)
    reps = 50
    clip.values = np.tile(clip.values, (reps, 1, 1))
    clip.jacobians = np.tile(clip.jacobians, (reps, 1, 1, 1))
    clip.frame_indices = np.arange(len(clip.values))
    clip.sample_times = None  # times follow the new frame numbers (frame_indices / fps)
    out = addon / "long" / "long_clip.npz"
    clip.save(out)
    return out


def _until_progress(worker: WorkerJob, timeout: float = 120) -> None:
    """Poll until the worker reports real work under way (past loading the model)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for ev in worker.poll():
            if ev.get("event") == "progress" and ev.get("done"):
                return
        assert worker.state == RUNNING, worker.error
        time.sleep(0.02)
    raise AssertionError("no progress from the worker")


def test_probe():
    result = run_job({"kind": "probe"}, python=worker_python())
    assert result["event"] == "result" and "cpu" in result["devices"] and result["torch"]


def test_run_job_reports_progress(tmp_path, driving_video):
    seen = []
    out = tmp_path / "c.npz"
    job = {
        "kind": "extract",
        "video": str(driving_video),
        "output": str(out),
        **_model(),
        "options": {"crop": "full"},
    }
    result = run_job(job, python=worker_python(), progress=lambda d, t, m: seen.append((d, t, m)))
    assert result["frames"] == 16 and out.is_file()
    assert seen[-1][0] == 16 and any(m == "extracting motion" for *_, m in seen)


def test_worker_error_is_one_line(tmp_path):
    job = {
        "kind": "extract",
        "video": str(tmp_path / "none.mp4"),
        "output": str(tmp_path / "c.npz"),
        **_model(),
    }
    with pytest.raises(FommError) as err:
        run_job(job, python=worker_python())
    assert str(err.value) == f"video not found: {tmp_path / 'none.mp4'}"


def test_cancel_extract_leaves_nothing(tmp_path, long_video):
    out = tmp_path / "long.npz"
    job = {
        "kind": "extract",
        "video": str(long_video),
        "output": str(out),
        **_model(),
        "options": {"crop": "full"},
    }
    worker = WorkerJob(job, python=worker_python()).start()
    _until_progress(worker)
    worker.cancel()
    assert worker.wait(timeout=60) == CANCELLED
    assert not out.exists() and not partial_outputs(out)
    assert list(tmp_path.iterdir()) == []


def _animating(tmp_path: Path, clip: Path, frames: Path) -> WorkerJob:
    """A worker animating a grey image with ``clip`` into ``frames``, past its first batch."""
    src = tmp_path / "src.png"
    code = f"import cv2, numpy as np; cv2.imwrite({str(src)!r}, np.full((64, 64, 3), 90, np.uint8))"
    subprocess.run([worker_python(), "-c", code], check=True)
    job = {
        "kind": "animate",
        "source": str(src),
        "clip": str(clip),
        "output": str(frames) + os.sep,
        **_model(),
    }
    worker = WorkerJob(job, python=worker_python()).start()
    _until_progress(worker)
    return worker


def test_cancel_animate_removes_streamed_frames(tmp_path, long_clip):
    frames = tmp_path / "frames"
    worker = _animating(tmp_path, long_clip, frames)
    assert partial_outputs(frames), "frames are streamed into a partial folder while the job runs"
    worker.cancel()
    assert worker.wait(timeout=60) == CANCELLED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.png"]


def test_killed_worker_clear_error_and_cleanup(tmp_path, long_clip):
    frames = tmp_path / "frames"
    worker = _animating(tmp_path, long_clip, frames)
    worker.kill()  # as a crash or the OOM killer would: no chance to clean up
    assert worker.wait(timeout=30) == FAILED
    assert "killed by signal" in worker.error and "nothing was changed" in worker.error
    assert "\n" not in worker.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.png"]  # the client removed the leftovers


def test_killed_worker_during_bake_leaves_scene_untouched(long_video, tmp_path):
    scene = bpy.context.scene
    scene.fomm.video_path = str(long_video)
    scene.fomm.crop_mode = "FULL"
    before = scene.fomm.clip_path
    step = pipeline.extract_step(scene)
    worker = WorkerJob(step.job, python=worker_python()).start()
    _until_progress(worker)
    worker.kill()
    assert worker.wait(timeout=30) == FAILED
    # the operator finishes only on DONE: the scene keeps its clip and nothing is written
    assert scene.fomm.clip_path == before
    assert not Path(step.job["output"]).exists() and not partial_outputs(step.job["output"])


def test_cancel_callback_in_sync_run(tmp_path, long_video):
    out = tmp_path / "c.npz"
    job = {
        "kind": "extract",
        "video": str(long_video),
        "output": str(out),
        **_model(),
        "options": {"crop": "full"},
    }
    progress = []
    with pytest.raises(KeyboardInterrupt):
        run_job(
            job,
            python=worker_python(),
            progress=lambda d, t, m: progress.append(d),
            cancel=lambda: bool(progress),
        )
    assert not out.exists() and not partial_outputs(out)


def test_worker_python_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("FOMM_WORKER_PYTHON", raising=False)
    import sys

    assert default_python("") == (sys.executable, True)
    monkeypatch.setenv("FOMM_WORKER_PYTHON", worker_python())
    assert default_python("") == (worker_python(), False)
    with pytest.raises(FommError, match="worker Python not found"):
        default_python(str(tmp_path / "python9"))
    with pytest.raises(FommError, match="cannot start the worker"):
        exe = tmp_path / "broken"
        exe.write_text("not a program")
        exe.chmod(0o755)
        WorkerJob({"kind": "probe"}, python=str(exe)).start()


def test_remove_partial_outputs(tmp_path):
    target = tmp_path / "clip.npz"
    fd, name = tempfile.mkstemp(prefix=".clip.", suffix=".partial.npz", dir=tmp_path)
    os.close(fd)
    folder = tmp_path / "frames"
    part_dir = Path(tempfile.mkdtemp(prefix=".frames.", suffix=".partial", dir=tmp_path))
    (part_dir / "preview_0001.png").write_bytes(b"x")
    keep = tmp_path / "other.npz"
    keep.write_bytes(b"x")
    assert len(partial_outputs(target)) == 1 and len(partial_outputs(folder)) == 1
    remove_partial_outputs([target, folder])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.npz"]


def test_done_state(tmp_path):
    worker = WorkerJob({"kind": "probe"}, python=worker_python()).start()
    assert worker.wait(timeout=120) == DONE and worker.result["kind"] == "probe"
    worker.close()
