"""Video and image I/O: the one place that opens videos (PyAV/FFmpeg) and writes them.

Frames are always RGB ``uint8`` ``[H, W, 3]`` as the video is meant to be *displayed*: the rotation a
phone records in the container (the display matrix) is applied, so portrait footage comes out upright
with its displayed size. Every frame carries its presentation time (from its timestamp, so a
variable-frame-rate phone video keeps its true timing); the frame rate and the frame count come from
what actually decodes, not from the container's header. Grayscale is replicated to three channels,
alpha is composited over black, 16-bit images are reduced to 8 bits. Sizes read from a file are checked
against :data:`MAX_FRAME_SIDE` and :data:`MAX_FRAME_PIXELS` before anything that size is allocated.
Any failure a user can cause (missing, empty, damaged, audio-only or non-video file) is a one-line
:class:`~ml_core.errors.FommError`. Stills (:func:`read_image`) are decoded by OpenCV.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

# FFmpeg prints its own complaints ("moov atom not found") straight to stderr, which would break the
# one-line error contract. Quiet OpenCV's copy (used by other code) before it is first used; PyAV's
# copy is quieted below.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(50_000_000))  # see MAX_FRAME_PIXELS

import av  # noqa: E402
import av.logging  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ml_core.errors import FommError  # noqa: E402
from ml_core.fileio import atomic_path, write_failed  # noqa: E402

av.logging.set_level(None)  # no FFmpeg logging at all (PyAV: None = quiet)

with contextlib.suppress(AttributeError):  # silence OpenCV's own warnings (e.g. backend probing)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

__all__ = [
    "DEFAULT_FPS",
    "MAX_FPS",
    "MAX_FRAME_PIXELS",
    "MAX_FRAME_SIDE",
    "VideoReader",
    "VideoWriter",
    "read_image",
    "sample_frames",
    "to_rgb",
    "write_video",
]

DEFAULT_FPS = 30.0  # used only when neither timestamps nor the header give a usable rate
# Limits on sizes read from a file, checked before allocating: 8K UHD (7680x4320, 33 MP) and a
# 48 MP phone photo (8000x6000) fit; a forged header declaring 60000x60000 does not.
MAX_FRAME_SIDE = 16384
MAX_FRAME_PIXELS = 50_000_000
MAX_FPS = 10000.0  # high-speed cameras record up to a few thousand frames per second
UNRELIABLE_TIMES = 0.01  # more frames than this fraction with missing/repeated timestamps: time them at the header rate

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


def _check_frame_size(width: int, height: int, what: str) -> None:
    """Refuse a frame size no real input needs, before a frame that size is allocated."""
    if width <= 0 or height <= 0:
        raise FommError(f"{what} declares an empty frame size {width}x{height}: the file is damaged")
    if max(width, height) > MAX_FRAME_SIDE or width * height > MAX_FRAME_PIXELS:
        raise FommError(
            f"{what} is {width}x{height} pixels, larger than the {MAX_FRAME_SIDE} pixels a side and "
            f"{MAX_FRAME_PIXELS // 1_000_000} megapixels this tool reads: scale it down first"
        )


def _image_header_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG or JPEG header without decoding (None for other formats)."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(head):
            if head[i] != 0xFF:
                return None
            marker = head[i + 1]
            length = int.from_bytes(head[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(head[i + 7 : i + 9], "big"), int.from_bytes(head[i + 5 : i + 7], "big")
            i += 2 + length
    return None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a still image (PNG, JPEG, ...; gray, alpha and 16-bit handled) as RGB uint8 [H,W,3].

    PNG and JPEG sizes are checked against :data:`MAX_FRAME_SIDE`/:data:`MAX_FRAME_PIXELS` from the
    header before decoding (other formats by OpenCV's own pixel limit, set to the same).
    """
    path = Path(path)
    _check_file(path, "image")
    with open(path, "rb") as f:  # works with any file name, unlike cv2.imread
        head = f.read(1 << 16)
    size = _image_header_size(head)
    if size is not None:
        _check_frame_size(size[0], size[1], f"the image {path.name}")
    data = np.fromfile(path, dtype=np.uint8)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None:
        raise FommError(f"cannot read {path} as an image: not a format OpenCV decodes (use PNG or JPEG)")
    return to_rgb(img)


def _open_container(path: Path) -> Any:
    """``av.open`` for reading, with any file name (one that is not valid UTF-8 goes as a file object)."""
    try:
        os.fsencode(path).decode("utf-8")
        source: Any = str(path)
    except UnicodeDecodeError:
        source = open(path, "rb")  # noqa: SIM115 - closed with the container
    try:
        try:
            return av.open(source, "r", metadata_errors="ignore")  # PyAV < 19: tags not in UTF-8 are skipped
        except TypeError:  # PyAV 19 dropped the option (and no longer fails on such tags)
            return av.open(source, "r")
    except (av.FFmpegError, OSError, ValueError, UnicodeError):
        if not isinstance(source, str):
            source.close()
        kind = _sniff(path)
        if kind is not None:
            raise FommError(
                f"cannot decode {path}: it looks like {kind} but is damaged or truncated "
                "(an interrupted copy or recording?); export or copy it again"
            ) from None
        raise FommError(
            f"cannot read {path} as a video: not a format FFmpeg decodes (convert it to an H.264 .mp4)"
        ) from None


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        what = "only audio (no video stream)" if container.streams.audio else "no video stream"
        raise FommError(f"{path.name} holds {what}: give a video file of the performance")
    stream = container.streams.video[0]
    cc = stream.codec_context
    _check_frame_size(int(cc.width or 0) or 1, int(cc.height or 0) or 1, f"the video {path.name}")
    stream.thread_type = "AUTO"
    return stream


def _rate(value: Any) -> float | None:
    try:
        rate = float(value) if value is not None else 0.0
    except (TypeError, ZeroDivisionError):
        return None
    return rate if np.isfinite(rate) and 0.0 < rate <= MAX_FPS else None


def _upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame as displayed: ``rotation`` as PyAV reads it (matches FFmpeg's own autorotation)."""
    turns = round(rotation / 90.0) % 4
    return np.ascontiguousarray(np.rot90(frame, turns)) if turns else frame


class VideoReader:
    """Stream the frames of a video file, one at a time, with memory bounded by one frame.

    ``start`` (first frame, default 0), ``end`` (exclusive, default the last frame that decodes) and
    ``step`` select frames by their index in the file. Iterating yields ``(index, frame)`` with ``frame``
    RGB uint8 [H,W,3] as displayed (rotation applied; ``bgr=True``: BGR order for OpenCV callers);
    frames between selected ones are decoded but not converted. :attr:`times` holds the presentation
    time (seconds from the first frame) of every yielded frame, in order.

    Opening decodes the first frame, so a file that opens but does not decode fails here with a
    FommError. After a full iteration, :attr:`frames_decoded` is the real number of frames, :attr:`fps`
    the rate measured from the decoded timestamps, and :attr:`notes` says what went wrong or what was
    done along the way (a truncated file: what decodes is kept; a rotation; a variable frame rate).
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
        self._container: Any = _open_container(self.path)
        self._frames: Iterator[Any] | None = None
        try:
            self._open_stream()
        except BaseException:
            self.close()
            raise
        self.frames_decoded: int | None = None
        self.times: list[float] = []
        self._last_index = 0
        self._last_ts = 0.0
        self._iterated = False

    def _open_stream(self) -> None:
        stream = _video_stream(self._container, self.path)
        self.header_fps = _rate(stream.average_rate) or _rate(stream.guessed_rate)
        self.header_frame_count = int(stream.frames) if stream.frames and stream.frames > 0 else None
        self._frames = self._container.decode(stream)
        first = self._next_frame()
        if first is None:
            raise FommError(
                f"{self.path} opens as a video but no frame decodes: damaged file or unsupported codec "
                "(re-encode it to H.264 .mp4)"
            )
        self._first: Any = first
        self.rotation = int(getattr(first, "rotation", 0) or 0)
        self._coded = (int(first.width), int(first.height))
        _check_frame_size(*self._coded, f"the video {self.path.name}")
        w, h = self._coded
        self.width, self.height = (h, w) if round(self.rotation / 90.0) % 2 else (w, h)
        self._t0 = first.time if first.time is not None else 0.0
        self.notes: list[str] = []
        if round(self.rotation / 90.0) % 4:
            self.notes.append(
                f"{self.path.name} carries a {self.rotation % 360}-degree display rotation (phone footage): "
                f"frames are turned upright ({self.width}x{self.height})"
            )

    def _next_frame(self) -> Any:
        """The next decoded frame, or None at the end (or where a damaged file stops decoding)."""
        if self._frames is None:
            return None
        try:
            return next(self._frames)
        except StopIteration:
            return None
        except (av.FFmpegError, OSError, ValueError):
            self._damaged = True
            return None

    # -- properties -------------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the frames as displayed (after the rotation the file asks for)."""
        return self.width, self.height

    @property
    def fps(self) -> float:
        """Frames per second: measured from decoded timestamps when possible, else the header's."""
        measured = None
        if self._last_index > 0 and self._last_ts > 0.0:
            measured = self._last_index / self._last_ts
        if measured is not None and 0.0 < measured <= MAX_FPS:
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
    def _time(self, frame: Any, index: int) -> float:
        """Seconds from the first frame; a missing or non-increasing timestamp is estimated."""
        ts = frame.time
        rate = self.header_fps or DEFAULT_FPS
        if ts is None or not np.isfinite(ts) or (index > 0 and ts - self._t0 <= self._prev_t):
            if index > 0:
                self._estimated += 1
            t = (self._prev_t + 1.0 / rate) if index > 0 else 0.0
        else:
            t = float(ts - self._t0)
        self._prev_t = t
        return t

    def _convert(self, frame: Any, index: int) -> np.ndarray:
        if (int(frame.width), int(frame.height)) != self._coded:
            _check_frame_size(int(frame.width), int(frame.height), f"the video {self.path.name}")
        img = _upright(frame.to_ndarray(format="bgr24" if self.bgr else "rgb24"), self.rotation)
        if img.shape[:2] != (self.height, self.width):
            if not any("size changes" in n for n in self.notes):
                self.notes.append(
                    f"frame size changes at frame {index} "
                    f"({img.shape[1]}x{img.shape[0]}); resized to {self.width}x{self.height}"
                )
            img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return img

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self._iterated:
            raise RuntimeError("a VideoReader can be iterated once; open a new one")
        self._iterated = True
        if self._container is None:
            raise RuntimeError("VideoReader is closed")
        index = 0
        self._prev_t = 0.0
        self._estimated = 0
        self._damaged = False
        frame, self._first = self._first, None
        gaps: list[float] = []
        try:
            while frame is not None:
                if self.end is not None and index >= self.end:
                    break
                t = self._time(frame, index)
                if index > 0:
                    gaps.append(t - self._last_ts)
                    self._last_ts, self._last_index = t, index
                if index >= self.start and (index - self.start) % self.step == 0:
                    image = self._convert(frame, index)
                    self.times.append(t)
                    yield index, image
                index += 1
                frame = self._next_frame()
        finally:
            self.close()
        self._finish(index, gaps)

    def _finish(self, index: int, gaps: list[float]) -> None:
        reached_end = self.end is None or index < self.end
        if reached_end:
            self.frames_decoded = index
            expected = self.header_frame_count
            if self._damaged or (expected is not None and index < expected - max(2, int(0.01 * expected))):
                of = f" of the {expected} frames the file announces" if expected else ""
                self.notes.append(
                    f"{self.path.name}: decoding stopped after {index}{of} frames (truncated or damaged?); "
                    "using the frames that decode"
                )
        constant_rate = bool(self._estimated) and self._constant_rate_instead(index)
        if not constant_rate and len(gaps) >= 2:
            g = np.asarray(gaps)
            if g.max() - g.min() > 0.25 * np.median(g) + 1e-4:
                self.notes.append(
                    f"{self.path.name} has a variable frame rate (frame gaps {1000 * g.min():.1f}-"
                    f"{1000 * g.max():.1f} ms): each sample keeps its own presentation time"
                )
        if not self.times:
            total = self.frames_decoded if self.frames_decoded is not None else index
            raise FommError(
                f"no frames selected: {self.path.name} has {total} decodable frames and the start frame is "
                f"{self.start}; choose a start frame below {total}"
            )

    def _constant_rate_instead(self, decoded: int) -> bool:
        """After frames whose timestamps were missing or repeated: with more than :data:`UNRELIABLE_TIMES` of them
        (AVI files with packed B-frames repeat or skip many) the timestamps are not trusted at all and every frame is
        timed at the header's constant rate (True); a stray one keeps its estimate. One note either way."""
        rate = self.header_fps or DEFAULT_FPS
        what = f"{self._estimated} of {decoded} frames of {self.path.name} have a missing or repeated timestamp"
        if self._estimated <= max(1, UNRELIABLE_TIMES * decoded):
            self.notes.append(f"{what}: their times are estimated")
            return False
        self.times = [(self.start + k * self.step) / rate for k in range(len(self.times))]
        self._last_index, self._last_ts = 0, 0.0  # fps: the header's
        self.notes.append(f"{what}: the timestamps are ignored and frames are timed at the header's {rate:g} fps")
        return True

    def read_all(self) -> list[np.ndarray]:
        """Every selected frame in a list (unbounded memory: for short clips and tests only)."""
        return [frame for _, frame in self]

    def close(self) -> None:
        container, self._container = getattr(self, "_container", None), None
        self._frames = None
        self._first = None
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def sample_frames(
    path: str | os.PathLike, indices: Iterable[int], *, times: Mapping[int, float] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """RGB frames (upright) at ``indices`` by seeking: quick for a few frames spread over a long video.

    Seeking goes by time: ``times[index]`` (seconds from the first frame, as :attr:`VideoReader.times`
    gives them) where known, else ``index / frame rate``, which is exact for constant-rate files; with a
    variable rate or a damaged index that may land near the frame instead; use it where that does not
    matter (e.g. sampling for a face box) and :class:`VideoReader` where it does. Frames that fail to
    decode are skipped.
    """
    path = Path(path)
    _check_file(path, "video")
    container = _open_container(path)
    try:
        stream = _video_stream(container, path)
        rate = _rate(stream.average_rate) or _rate(stream.guessed_rate) or DEFAULT_FPS
        tb = stream.time_base
        origin = stream.start_time or 0
        for index in sorted(int(i) for i in indices):
            target = times[index] if times is not None and index in times else index / rate
            try:
                container.seek(origin + int(target / tb), stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    ts = frame.time
                    if ts is None or ts - origin * tb + 0.5 / rate >= target:
                        _check_frame_size(int(frame.width), int(frame.height), f"the video {path.name}")
                        rotation = int(getattr(frame, "rotation", 0) or 0)
                        yield index, _upright(frame.to_ndarray(format="rgb24"), rotation)
                        break
            except (av.FFmpegError, OSError, ValueError):
                continue
    finally:
        container.close()


class VideoWriter:
    """Write RGB frames to a video file atomically: the file appears whole on success, never partially.

    ``.mp4``/``.mov``/``.m4v`` use FFmpeg's MPEG-4 Part 2 encoder (``mpeg4``, fixed quality); odd frame
    sizes are padded by one black row/column (the encoder needs even sizes). ``.avi`` uses Motion-JPEG,
    which keeps any size exactly. The frame size is fixed by the first frame; later frames must match
    it. Every encode, write and the final flush are checked: a full disk or a file size limit raises a
    one-line FommError, and the partial file is removed, so an earlier good file is never replaced by a
    broken one. Use as a context manager::

        with VideoWriter("out.mp4", fps=25) as w:
            for frame in frames:
                w.write(frame)
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, fourcc: str | None = None) -> None:
        self.path = Path(path)
        if not (np.isfinite(fps) and 0 < fps <= MAX_FPS):
            raise FommError(f"frame rate must be a positive number up to {MAX_FPS:g}, got {fps}")
        self.fps = float(fps)
        ext = self.path.suffix.lower()
        if ext in (".mp4", ".mov", ".m4v"):
            self._codec, self._pix, self._even = "mpeg4", "yuv420p", True
        elif ext == ".avi":
            self._codec, self._pix, self._even = "mjpeg", "yuvj420p", False
        else:
            raise FommError(f"cannot write video {self.path.name}: use a .mp4, .mov or .avi file name")
        if fourcc is not None and fourcc.lower() not in ("mp4v", "mjpg"):
            raise FommError(f"unsupported fourcc {fourcc!r}: mp4v (.mp4) and MJPG (.avi) are written")
        self._stack: contextlib.ExitStack | None = None
        self._container: Any = None
        self._stream: Any = None
        self._tmp: Path | None = None
        self.size: tuple[int, int] | None = None
        self.frames_written = 0

    def __enter__(self) -> VideoWriter:
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def _open(self, w: int, h: int) -> None:
        from fractions import Fraction

        assert self._tmp is not None
        self.size = (w, h)
        self._out_size = (w + (w & 1), h + (h & 1)) if self._even else (w, h)
        try:
            self._container = av.open(str(self._tmp), "w")
            rate = Fraction(self.fps).limit_denominator(1001)
            stream = self._container.add_stream(self._codec, rate=rate)
            stream.width, stream.height = self._out_size
            stream.pix_fmt = self._pix
            stream.options = {"flags": "+qscale", "global_quality": str(3 * 118)}  # like ffmpeg -q:v 3
            self._stream = stream
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: BaseException) -> FommError:
        if isinstance(exc, OSError) and exc.errno is not None:
            return write_failed(self.path, exc)
        return FommError(f"cannot write the video {self.path}: {exc}; nothing was written")

    def _mux(self, frame: Any) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise self._failed(exc) from None

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB (or gray) uint8 frame."""
        if self._tmp is None:
            raise RuntimeError("use VideoWriter as a context manager")
        rgb = to_rgb(frame, bgr=False)
        h, w = rgb.shape[:2]
        if self._stream is None:
            self._open(w, h)
        elif (w, h) != self.size:
            assert self.size is not None
            raise FommError(f"video frames must all be {self.size[0]}x{self.size[1]}, got {w}x{h}")
        ow, oh = self._out_size
        if (ow, oh) != (w, h):
            rgb = cv2.copyMakeBorder(rgb, 0, oh - h, 0, ow - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        self._mux(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"))
        self.frames_written += 1

    def _close_container(self, ok: bool) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        try:
            if ok:
                self._mux(None)  # flush the encoder
        finally:
            try:
                container.close()
            except (av.FFmpegError, OSError, ValueError) as exc:
                if ok:
                    raise self._failed(exc) from None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        try:
            self._close_container(exc_type is None)
            if exc_type is None and self.frames_written == 0:
                raise FommError(f"no frames to write to {self.path}")
        except FommError as err:
            if stack is None or not stack.__exit__(FommError, err, err.__traceback__):
                raise
            return
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write RGB frames to ``path`` atomically (see :class:`VideoWriter`); returns the frame count."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames_written
