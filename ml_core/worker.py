"""The background worker: one job (extract | animate | detect-images) run for the Blender add-on.

``python -m ml_core worker JOB.json`` (or ``-``: the job as the first line of stdin) runs the job through
the ml_core APIs and reports on stdout, one JSON object per line (nothing else is written there):

- ``{"event": "start", "kind": ..., "pid": ...}``
- ``{"event": "progress", "done": n, "total": m or null, "message": "..."}``
- ``{"event": "log", "message": "..."}`` (notes worth showing, e.g. "no face found: full frame")
- ``{"event": "result", "kind": ..., ...}`` (what the job made; see each job below)
- ``{"event": "error", "message": "one line"}`` (exit 2; exit 1 with a traceback on stderr for a bug)
- ``{"event": "cancelled"}`` (exit 130)

Cancelling: SIGTERM or SIGINT; or, with ``--watch-stdin``, a line ``cancel`` on stdin or stdin closing
(the add-on dies -> the worker stops; this also works on Windows, where SIGTERM cannot be caught).
Every output is written through :func:`ml_core.fileio.atomic_path`: a cancelled or failed job leaves
nothing behind. The jobs, their fields and options are the dataclasses of :mod:`ml_core.jobs` (JSON:
``{"kind": KIND, FIELD: VALUE, ..., "options": {...}}``), checked there before anything runs:

- ``extract`` (:class:`~ml_core.jobs.ExtractJob`): a driving video into a motion clip;
- ``animate`` (:class:`~ml_core.jobs.AnimateJob`): the neural preview;
- ``detect-images`` (:class:`~ml_core.jobs.DetectImagesJob`): the keypoint detector on still images (calibration
  renders), each framed to a square like the video frames (no stretching) and resized to the model's input size;
  OUT.npz holds ``values`` [N,K,2], ``jacobians`` [N,K,2,2], ``has_jacobians``, ``config_hash``,
  ``checkpoint_hash``;
- ``probe`` (:class:`~ml_core.jobs.ProbeJob`): Python, ml_core and torch versions, devices.
"""

from __future__ import annotations

import _thread
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ml_core.errors import FommError
from ml_core.fileio import atomic_path
from ml_core.jobs import AnimateJob, DetectImagesJob, ExtractJob, Job, ModelJob, ProbeJob, job_from_json

if TYPE_CHECKING:
    from ml_core.model import ModelBundle

Emit = Callable[[dict], None]


# --------------------------------------------------------------------------------------------------
# Job parsing
# --------------------------------------------------------------------------------------------------


def parse_job(text: str) -> Job:
    """A job from its JSON text, checked (:func:`ml_core.jobs.job_from_json`)."""
    return job_from_json(text)


def read_job(source: str, stdin: IO[str] | None = None) -> Job:
    """The job from a file path, or from the first line of stdin when ``source`` is ``-``."""
    if source == "-":
        line = (stdin or sys.stdin).readline()
        if not line.strip():
            raise FommError("no job on stdin: send one JSON object on the first line")
        return parse_job(line)
    path = Path(source)
    if not path.is_file():
        raise FommError(f"job file not found: {source}")
    return parse_job(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------------


def _load_bundle(job: ModelJob) -> ModelBundle:
    """The job's model (``device`` ``auto`` is resolved by :func:`ml_core.model.resolve_device`)."""
    from ml_core import load_model

    return load_model(job.checkpoint or None, job.config or None, device=job.device.lower())


def _progress(emit: Emit, message: str) -> Callable[[int, int | None], None]:
    def report(done: int, total: int | None) -> None:
        emit(
            {
                "event": "progress",
                "done": int(done),
                "total": None if total is None else int(total),
                "message": message,
            }
        )

    return report


def run_extract(job: ExtractJob, emit: Emit) -> dict:
    video = Path(job.video)
    if not video.is_file():
        raise FommError(f"video not found: {video}")
    from ml_core import extract

    emit({"event": "progress", "done": 0, "total": None, "message": "loading the model"})
    bundle = _load_bundle(job)
    clip = extract(
        str(video),
        model=bundle,
        progress=_progress(emit, "extracting motion"),
        log=lambda line: emit({"event": "log", "message": str(line)}),
        **asdict(job.options),
    )
    clip.save(job.output)
    return {
        "clip": str(job.output),
        "frames": int(clip.num_frames),
        "fps": float(clip.fps),
        "num_kp": int(clip.num_kp),
        "reference_frame": int(clip.reference_frame),
    }


def run_animate(job: AnimateJob, emit: Emit) -> dict:
    from ml_core import animate

    emit({"event": "progress", "done": 0, "total": None, "message": "loading the model"})
    bundle = _load_bundle(job)
    info = animate(
        job.source,
        job.clip,
        job.output,
        model=bundle,
        progress=_progress(emit, "rendering the preview"),
        log=lambda line: emit({"event": "log", "message": str(line)}),
        **asdict(job.options),
    )
    result: dict[str, Any] = {"output": str(job.output)}
    result.update({k: v for k, v in info.items() if k != "output" and isinstance(v, int | float | str | bool)})
    return result


def square_frame(image: np.ndarray, size: int) -> np.ndarray:
    """A calibration render [H,W,3] framed exactly like a video frame extracted with crop ``full``: the whole image
    centred in a square (the short side padded with black, never stretched), resized to ``size`` (INTER_AREA):
    :func:`ml_core.framing.crop_square` of :func:`~ml_core.framing.full_frame_box`."""
    from ml_core.framing import crop_square, full_frame_box

    h, w = image.shape[:2]
    return crop_square(image, full_frame_box(w, h), size)


def run_detect_images(job: DetectImagesJob, emit: Emit) -> dict:
    from ml_core.extraction import detect
    from ml_core.video import read_image

    images = job.images
    emit({"event": "progress", "done": 0, "total": len(images), "message": "loading the model"})
    bundle = _load_bundle(job)
    frames = []
    for i, path in enumerate(images):
        frames.append(square_frame(read_image(path), bundle.image_size))
        emit({"event": "progress", "done": i + 1, "total": len(images), "message": "reading renders"})
    values, jacobians = detect(bundle, np.stack(frames))
    values = np.asarray(values, dtype=np.float32)
    has_jac = jacobians is not None
    if jacobians is None:
        jacobians = np.broadcast_to(np.eye(2, dtype=np.float32), (*values.shape[:2], 2, 2))
    with atomic_path(job.output) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            values=values,
            jacobians=np.asarray(jacobians, dtype=np.float32),
            has_jacobians=np.array(has_jac),
            config_hash=np.array(str(bundle.config_hash)),
            checkpoint_hash=np.array(str(bundle.checkpoint_hash)),
        )
    return {"output": str(job.output), "count": len(images), "num_kp": int(values.shape[1])}


def run_probe(job: ProbeJob, emit: Emit) -> dict:
    """What this worker can run: Python, ml_core and torch versions, available devices."""
    import platform

    import ml_core

    result: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "ml_core": ml_core.__version__,
    }
    try:
        import torch
    except ImportError:
        result.update(torch=None, devices=[])
        return result
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    result.update(torch=torch.__version__, devices=devices)
    return result


RUNNERS: dict[str, Callable[[Any, Emit], dict]] = {
    "probe": run_probe,
    "extract": run_extract,
    "animate": run_animate,
    "detect-images": run_detect_images,
}


# --------------------------------------------------------------------------------------------------
# The process: events on stdout, cancellation
# --------------------------------------------------------------------------------------------------


class EventWriter:
    """Writes one JSON object per line to a private copy of stdout and flushes each line.

    ``redirect()`` points file descriptor 1 (and ``sys.stdout``) at stderr, so whatever a library
    prints cannot corrupt the protocol.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._stream = stream

    def redirect(self) -> None:
        sys.stdout.flush()
        self._stream = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def __call__(self, event: dict) -> None:
        line = json.dumps(event, allow_nan=False, default=str)
        with self._lock:
            stream = self._stream or sys.stdout
            stream.write(line + "\n")
            stream.flush()


_finished = threading.Event()
# Set by the first cancellation (SIGTERM, SIGINT, a "cancel" line, stdin closing): later ones are ignored, because a
# second KeyboardInterrupt raised while the first unwinds (e.g. inside threading.Condition.wait's lock restore) turns
# into "RuntimeError: release unlocked lock" and the job would end as an internal error instead of cancelled.
_cancelling = threading.Event()


def _watch_stdin(stdin: IO[str]) -> None:
    """Interrupt the main thread on a ``cancel`` line or when stdin closes (the add-on went away)."""
    try:
        for line in stdin:
            if line.strip().lower() == "cancel":
                break
    except (OSError, ValueError):
        pass
    if not _finished.is_set():
        _thread.interrupt_main()  # runs serve's handler, which ignores it after an earlier cancellation


def serve(job_source: str, *, watch_stdin: bool = False, emit: EventWriter | None = None) -> int:
    """Run one job and report on stdout. Returns the exit code (0, 1, 2 or 130)."""
    emit = emit or EventWriter()
    if emit._stream is None:
        emit.redirect()

    def on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
        if _cancelling.is_set():
            return  # already unwinding from the first one
        _cancelling.set()
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    _finished.clear()
    _cancelling.clear()
    try:
        job = read_job(job_source)
        emit({"event": "start", "kind": job.KIND, "pid": os.getpid()})
        if watch_stdin:
            threading.Thread(target=_watch_stdin, args=(sys.stdin,), daemon=True).start()
        result = RUNNERS[job.KIND](job, emit)
        _finished.set()
        emit({"event": "result", "kind": job.KIND, **result})
        return 0
    except KeyboardInterrupt:
        emit({"event": "cancelled"})
        return 130
    except FommError as exc:
        emit({"event": "error", "message": str(exc)})
        return 2
    except Exception as exc:  # a bug: keep the traceback for the report
        traceback.print_exc(file=sys.stderr)
        message = " ".join(f"internal error: {type(exc).__name__}: {exc}".split())
        emit({"event": "error", "message": message})
        return 1
    finally:
        _finished.set()
        for s, handler in old.items():
            signal.signal(s, handler)
