"""Video and image I/O with OpenCV: a streaming reader with bounded memory and an atomic writer.

Frames are always RGB ``uint8`` ``[H, W, 3]``: grayscale is replicated to three channels, alpha is
composited over black, 16-bit images are reduced to 8 bits. The frame rate and the frame count come from
what actually decodes (timestamps and a count of decoded frames), not from the container's header, which
phone recordings and damaged files get wrong. Any failure a user can cause (missing, empty, damaged or
non-video file) is a one-line :class:`~ml_core.errors.FommError`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

# FFmpeg (inside OpenCV) prints its own complaints ("moov atom not found") straight to stderr, which
# would break the one-line error contract. Quiet it unless the user asked for its logs. Both variables
# are read when the first capture is opened, so setting them here (before any use) is enough.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ml_core.errors import FommError  # noqa: E402
from ml_core.fileio import atomic_path  # noqa: E402

with contextlib.suppress(AttributeError):  # silence OpenCV's own warnings (e.g. backend probing)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

__all__ = ["DEFAULT_FPS", "VideoReader", "VideoWriter", "read_image", "sample_frames", "to_rgb", "write_video"]

DEFAULT_FPS = 30.0  # used only when neither timestamps nor the header give a usable rate

_CONTAINERS = (  # magic bytes -> a name for error messages
    (4, b"ftyp", "an MP4/QuickTime video"),
    (0, b"RIFF", "an AVI video"),
    (0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (0, b"GIF8", "a GIF"),
    (0, b"\x00\x00\x01\xba", "an MPEG video"),
)


def to_rgb(image: np.ndarray, *, bgr: bool = True) -> np.ndarray:
    """Any OpenCV image (gray, BGR, BGRA; uint8 or uint16 or float in [0, 1]) as RGB uint8 [H,W,3].

    ``bgr`` says whether 3/4-channel input is in OpenCV's BGR order (True) or already RGB. Alpha is
    composited over black.
    """
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        if not np.issubdtype(img.dtype, np.floating):
            raise FommError(f"unsupported image data type {img.dtype}: expected 8- or 16-bit images")
        img = (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise FommError(f"unsupported image shape {img.shape}: expected gray, RGB or RGBA")
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.uint16)
        img = ((img[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    if bgr:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise FommError(f"{what} not found: {path}")
    if path.is_dir():
        raise FommError(f"{path} is a folder, not a {what} file")
    if not os.access(path, os.R_OK):
        raise FommError(f"cannot read {path}: permission denied")
    if path.stat().st_size == 0:
        raise FommError(f"{what} file {path} is empty (0 bytes): copy or export it again")


def _sniff(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    for offset, magic, name in _CONTAINERS:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a still image (PNG, JPEG, ...; gray, alpha and 16-bit handled) as RGB uint8 [H,W,3]."""
    path = Path(path)
    _check_file(path, "image")
    data = np.fromfile(path, dtype=np.uint8)  # works with non-ASCII paths, unlike cv2.imread
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FommError(f"cannot read {path} as an image: not a format OpenCV decodes (use PNG or JPEG)")
    return to_rgb(img)


class VideoReader:
    """Stream the frames of a video file, one at a time, with memory bounded by one frame.

    ``start`` (first frame, default 0), ``end`` (exclusive, default the last frame that decodes) and
    ``step`` select frames by their index in the file. Iterating yields ``(index, frame)`` with ``frame``
    RGB uint8 [H,W,3] (``bgr=True``: OpenCV's BGR order, skipping the conversion for callers that
    shrink frames first); frames between selected ones are decoded but not converted (``grab``).

    Opening decodes the first frame, so a file that opens but does not decode fails here with a
    FommError. After a full iteration, :attr:`frames_decoded` is the real number of frames, :attr:`fps`
    the rate measured from the decoded timestamps, and :attr:`notes` says what went wrong along the way
    (for example a truncated file: what decodes is kept, and the note says how much).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        start: int | None = None,
        end: int | None = None,
        step: int = 1,
        bgr: bool = False,
    ) -> None:
        self.path = Path(path)
        self.bgr = bool(bgr)
        self.start = 0 if start is None else int(start)
        self.end = None if end is None else int(end)
        self.step = int(step)
        if self.start < 0:
            raise FommError(f"start frame must be 0 or more, got {self.start}")
        if self.end is not None and self.end <= self.start:
            raise FommError(f"end frame ({self.end}) must be after the start frame ({self.start})")
        if self.step < 1:
            raise FommError(f"frame step must be 1 or more, got {self.step}")
        _check_file(self.path, "video")
        self._cap: cv2.VideoCapture | None = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self.close()
            kind = _sniff(self.path)
            if kind is not None:
                raise FommError(
                    f"cannot decode {self.path}: it looks like {kind} but is damaged or truncated "
                    "(an interrupted copy or recording?); export or copy it again"
                )
            raise FommError(
                f"cannot read {self.path} as a video: not a format OpenCV/FFmpeg decodes "
                "(convert it to an H.264 .mp4)"
            )
        header_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.header_fps = header_fps if np.isfinite(header_fps) and 0.0 < header_fps < 1000.0 else None
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.header_frame_count = int(count) if np.isfinite(count) and count > 0 else None
        ok, first = self._cap.read()
        if not ok or first is None:
            self.close()
            raise FommError(
                f"{self.path} opens as a video but no frame decodes: damaged file or unsupported codec "
                "(re-encode it to H.264 .mp4)"
            )
        self._first: np.ndarray | None = first
        self._first_ts = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        self.height, self.width = first.shape[:2]
        self.frames_decoded: int | None = None
        self.notes: list[str] = []
        self._last_index = 0
        self._last_ts = self._first_ts
        self._iterated = False

    # -- properties -------------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the decoded frames (after any rotation the file asks for)."""
        return self.width, self.height

    @property
    def fps(self) -> float:
        """Frames per second: measured from decoded timestamps when possible, else the header's."""
        measured = None
        if self._last_index > 0 and self._last_ts > self._first_ts:
            measured = 1000.0 * self._last_index / (self._last_ts - self._first_ts)
        if measured is not None and 0.0 < measured < 1000.0:
            if self.header_fps is not None and abs(measured - self.header_fps) <= 0.005 * self.header_fps:
                return self.header_fps  # the exact nominal rate
            return measured
        if self.header_fps is not None:
            return self.header_fps
        return DEFAULT_FPS

    def expected_count(self) -> int | None:
        """How many frames iteration will yield, from the header (an estimate; None if unknown)."""
        total = self.header_frame_count
        if total is None:
            return None
        stop = total if self.end is None else min(total, self.end)
        if stop <= self.start:
            return 0
        return (stop - self.start + self.step - 1) // self.step

    # -- iteration --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self._iterated:
            raise RuntimeError("a VideoReader can be iterated once; open a new one")
        self._iterated = True
        cap = self._cap
        if cap is None:
            raise RuntimeError("VideoReader is closed")
        index = 0
        yielded = 0
        frame: np.ndarray | None = self._first
        self._first = None
        try:
            while True:
                if self.end is not None and index >= self.end:
                    break
                wanted = index >= self.start and (index - self.start) % self.step == 0
                if index > 0:
                    if wanted:
                        ok, frame = cap.read()
                    else:
                        ok, frame = cap.grab(), None
                    if not ok:
                        break
                    ts = float(cap.get(cv2.CAP_PROP_POS_MSEC))
                    if ts > self._last_ts:
                        self._last_ts, self._last_index = ts, index
                if wanted and frame is not None:
                    if frame.shape[:2] != (self.height, self.width):
                        if not any("size changes" in n for n in self.notes):
                            self.notes.append(
                                f"frame size changes at frame {index} "
                                f"({frame.shape[1]}x{frame.shape[0]}); resized to {self.width}x{self.height}"
                            )
                        frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
                    yield index, frame if self.bgr else to_rgb(frame)
                    yielded += 1
                frame = None
                index += 1
        finally:
            self.close()
        reached_end = self.end is None or index < self.end
        if reached_end:
            self.frames_decoded = index
            expected = self.header_frame_count
            if expected is not None and index < expected - max(2, int(0.01 * expected)):
                self.notes.append(
                    f"{self.path.name}: decoding stopped after {index} of the {expected} frames the file "
                    "announces (truncated or damaged?); using the frames that decode"
                )
        if yielded == 0:
            total = self.frames_decoded if self.frames_decoded is not None else index
            raise FommError(
                f"no frames selected: {self.path.name} has {total} decodable frames and the start frame is "
                f"{self.start}; choose a start frame below {total}"
            )

    def read_all(self) -> list[np.ndarray]:
        """Every selected frame in a list (unbounded memory: for short clips and tests only)."""
        return [frame for _, frame in self]

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._first = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def sample_frames(path: str | os.PathLike, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """RGB frames at ``indices`` by seeking: quick for a few frames spread over a long video.

    Seeking is frame-accurate for well-formed files, but a damaged index may land near the frame
    instead; use it where that does not matter (e.g. sampling for a face box) and :class:`VideoReader`
    where it does. Frames that fail to decode are skipped.
    """
    path = Path(path)
    _check_file(path, "video")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise FommError(f"cannot read {path} as a video")
        for index in indices:
            if not cap.set(cv2.CAP_PROP_POS_FRAMES, int(index)):
                continue
            ok, frame = cap.read()
            if ok and frame is not None:
                yield int(index), to_rgb(frame)
    finally:
        cap.release()


class VideoWriter:
    """Write RGB frames to a video file atomically: the file appears whole on success, never partially.

    ``.mp4``/``.mov``/``.m4v`` use the MPEG-4 Part 2 encoder (``mp4v``) that every OpenCV wheel ships;
    odd frame sizes are padded by one black row/column (the encoder needs even sizes). ``.avi`` uses
    OpenCV's built-in Motion-JPEG writer, which keeps any size exactly. The frame size is fixed by the
    first frame; later frames must match it. Use as a context manager::

        with VideoWriter("out.mp4", fps=25) as w:
            for frame in frames:
                w.write(frame)
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, fourcc: str | None = None) -> None:
        self.path = Path(path)
        if not (np.isfinite(fps) and fps > 0):
            raise FommError(f"frame rate must be a positive number, got {fps}")
        self.fps = float(fps)
        ext = self.path.suffix.lower()
        if ext in (".mp4", ".mov", ".m4v"):
            self._fourcc = fourcc or "mp4v"
            self._api = cv2.CAP_FFMPEG
            self._even = True
        elif ext == ".avi":
            self._fourcc = fourcc or "MJPG"
            self._api = cv2.CAP_OPENCV_MJPEG if self._fourcc == "MJPG" else cv2.CAP_FFMPEG
            self._even = self._api == cv2.CAP_FFMPEG
        else:
            raise FommError(f"cannot write video {self.path.name}: use a .mp4, .mov or .avi file name")
        self._stack: contextlib.ExitStack | None = None
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None
        self.size: tuple[int, int] | None = None
        self.frames_written = 0

    def __enter__(self) -> VideoWriter:
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB (or gray) uint8 frame."""
        if self._tmp is None:
            raise RuntimeError("use VideoWriter as a context manager")
        rgb = to_rgb(frame, bgr=False)
        h, w = rgb.shape[:2]
        if self._writer is None:
            self.size = (w, h)
            ow, oh = (w + (w & 1), h + (h & 1)) if self._even else (w, h)
            self._out_size = (ow, oh)
            self._writer = cv2.VideoWriter(
                str(self._tmp), self._api, cv2.VideoWriter_fourcc(*self._fourcc), self.fps, (ow, oh), True
            )
            if not self._writer.isOpened():
                raise FommError(f"cannot open a {self._fourcc} video writer for {self.path}")
        elif (w, h) != self.size:
            raise FommError(f"video frames must all be {self.size[0]}x{self.size[1]}, got {w}x{h}")
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ow, oh = self._out_size
        if (ow, oh) != (w, h):
            bgr = cv2.copyMakeBorder(bgr, 0, oh - h, 0, ow - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        self._writer.write(bgr)
        self.frames_written += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        stack, self._stack = self._stack, None
        if stack is None:
            return
        if exc_type is None and self.frames_written == 0:
            try:
                raise FommError(f"no frames to write to {self.path}")
            except FommError as err:
                if not stack.__exit__(FommError, err, err.__traceback__):
                    raise
            return
        stack.__exit__(exc_type, exc, tb)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write RGB frames to ``path`` atomically (see :class:`VideoWriter`); returns the frame count."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames_written
