"""Start the ml_core worker in a subprocess and follow its JSON-lines progress (no bpy, no torch here).

The heavy work (networks) never runs in Blender's process: a crash or out-of-memory there cannot take
the artist's scene with it, and Blender stays responsive. :class:`WorkerJob` starts
``PYTHON -m ml_core worker - --watch-stdin``, sends the job as the first stdin line, and reads stdout in
a thread into a queue; :meth:`WorkerJob.poll` hands the events to the caller's thread (Blender: a
modal operator's timer on the main thread). :func:`run_job` is the synchronous form (scripts, tests,
background mode). Cancelling writes ``cancel`` to the worker's stdin (it stops and cleans up its own
partial outputs), then kills it after a grace period; the partial outputs of a killed worker are
removed here.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from ml_core.errors import FommError
from ml_core.fileio import partial_outputs, remove_partial_outputs  # noqa: F401 - the one partial-file rule

ENV_PYTHON = "FOMM_WORKER_PYTHON"

RUNNING, DONE, FAILED, CANCELLED = "RUNNING", "DONE", "FAILED", "CANCELLED"


def default_python(configured: str = "") -> tuple[str, bool]:
    """The worker's interpreter: the configured one, else $FOMM_WORKER_PYTHON, else Blender's own.

    Returns (path, is_own): ``is_own`` means Blender's interpreter, which needs Blender's ``sys.path``
    (the extension's bundled packages) passed on.
    """
    for candidate in (configured.strip(), os.environ.get(ENV_PYTHON, "").strip()):
        if candidate:
            path = os.path.expanduser(candidate)
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise FommError(f"worker Python not found or not executable: {path}; fix it in the preferences")
            return path, False
    return sys.executable, True


def worker_env(is_own: bool, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if is_own:
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(paths)
    if extra:
        env.update(extra)
    return env


class WorkerJob:
    """One job in a worker subprocess. Call :meth:`start`, then :meth:`poll` until :attr:`state` is no
    longer RUNNING; :attr:`result` (DONE) or :attr:`error` (FAILED) then tells what happened."""

    def __init__(
        self,
        job: dict,
        *,
        python: str = "",
        env: dict[str, str] | None = None,
        outputs: Iterable[str] = (),
    ) -> None:
        self.job = job
        self.python, self._own = default_python(python)
        self.env = worker_env(self._own, env)
        outs = list(outputs)
        if not outs and job.get("output"):
            outs = [job["output"]]
        self.outputs = [str(o) for o in outs]
        self.state = RUNNING
        self.result: dict | None = None
        self.error: str | None = None
        self.done = 0
        self.total: int | None = None
        self.message = "starting the worker"
        self._events: queue.Queue = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=40)
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._terminal: dict | None = None
        self._cancel_requested = False

    # -- process ---------------------------------------------------------------------------------
    @property
    def command(self) -> list[str]:
        return [self.python, "-m", "ml_core", "worker", "-", "--watch-stdin"]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> WorkerJob:
        kwargs: dict = {}
        if os.name == "nt":
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        try:
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                # `-m` puts the working directory first on sys.path: start from a neutral folder so the worker
                # imports the ml_core it was given (the extension's), never one that happens to sit in Blender's cwd.
                cwd=tempfile.gettempdir(),
                **kwargs,
            )
        except OSError as exc:
            raise FommError(f"cannot start the worker with {self.python}: {exc.strerror or exc}") from None
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps(self.job) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died at once: poll() reports how
        return self

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self._stderr.append(line)
                continue
            if isinstance(event, dict) and "event" in event:
                self._events.put(event)
        self._events.put(None)  # end of stream

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            if line.strip():
                self._stderr.append(line.rstrip())

    # -- following ---------------------------------------------------------------------------------
    def poll(self) -> list[dict]:
        """Events received since the last call (never blocks); updates state/progress."""
        events: list[dict] = []
        if self._proc is None or self.state != RUNNING:
            return events
        ended = False
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event is None:
                ended = True
                break
            events.append(event)
            self._apply(event)
        if ended:
            self._finish()
        return events

    def _apply(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.done = int(event.get("done") or 0)
            total = event.get("total")
            self.total = None if total is None else int(total)
            self.message = str(event.get("message") or self.message)
        elif kind in {"result", "error", "cancelled"}:
            self._terminal = event

    def _finish(self) -> None:
        assert self._proc is not None
        try:
            rc = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            rc = self._proc.wait()
        term = self._terminal or {}
        if term.get("event") == "result" and rc == 0:
            self.state, self.result = DONE, term
            return
        if self._cancel_requested or term.get("event") == "cancelled":
            self.state = CANCELLED
            self.error = "cancelled"
        elif term.get("event") == "error":
            self.state, self.error = FAILED, str(term.get("message") or "the worker failed")
        else:
            self.state = FAILED
            how = f"was killed by signal {-rc}" if rc < 0 else f"stopped with exit code {rc}"
            last = self._stderr[-1] if self._stderr else "no message"
            self.error = " ".join(f"the worker {how} before finishing ({last}); nothing was changed".split())
        remove_partial_outputs(self.outputs)

    def stderr_tail(self) -> list[str]:
        return list(self._stderr)

    @property
    def fraction(self) -> float:
        if not self.total:
            return 0.0
        return max(0.0, min(1.0, self.done / self.total))

    # -- stopping ----------------------------------------------------------------------------------
    def cancel(self, grace: float = 5.0) -> None:
        """Ask the worker to stop (it removes its partial outputs), kill it after ``grace`` seconds."""
        if self._proc is None or self._proc.poll() is not None:
            self._cancel_requested = True
            return
        self._cancel_requested = True
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write("cancel\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def kill(self) -> None:
        """Hard stop (as a crash would): no chance to clean up; :meth:`poll` then removes leftovers."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> str:
        """Poll until the job ends (or ``timeout``); returns the state."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.state == RUNNING:
            self.poll()
            if self.state != RUNNING or (end is not None and time.monotonic() > end):
                break
            time.sleep(interval)
        return self.state

    def close(self) -> None:
        """Release pipes (after the job ended or was cancelled)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self.cancel()
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            with contextlib.suppress(Exception):
                stream.close()


def run_job(
    job: dict,
    *,
    python: str = "",
    env: dict[str, str] | None = None,
    progress: Callable[[int, int | None, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    interval: float = 0.05,
) -> dict:
    """Run ``job`` to completion in a worker; returns its result event.

    Raises :class:`FommError` with the worker's one-line message if it fails, and KeyboardInterrupt if
    ``cancel()`` turned true (the worker is stopped, its partial outputs removed).
    """
    worker = WorkerJob(job, python=python, env=env).start()
    try:
        while worker.state == RUNNING:
            if cancel is not None and cancel():
                worker.cancel()
                worker.wait()
                raise KeyboardInterrupt
            for event in worker.poll():
                if progress is not None and event.get("event") == "progress":
                    progress(worker.done, worker.total, worker.message)
            if worker.state == RUNNING:
                time.sleep(interval)
    except KeyboardInterrupt:
        worker.cancel()
        worker.wait()
        raise
    finally:
        worker.close()
    if worker.state == DONE:
        assert worker.result is not None
        return worker.result
    if worker.state == CANCELLED:
        raise KeyboardInterrupt
    raise FommError(worker.error or "the worker failed")
