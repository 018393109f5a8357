"""ml_core.video: streaming reader, bad files, atomic writer, colour conversions (real files, small sizes)."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ml_core.errors import FommError
from ml_core.video import VideoReader, VideoWriter, read_image, sample_frames, to_rgb, write_video


def pattern(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """An RGB frame whose content says which frame it is (a bright bar that moves, a colour per channel)."""
    f = np.zeros((h, w, 3), np.uint8)
    f[..., 0] = 200
    f[..., 2] = 40
    x = (i * 4) % (w - 8)
    f[:, x : x + 8, 1] = 255
    return f


def bar_position(frame: np.ndarray) -> int:
    """Centre column of the green bar (robust to compression: the mean of the bright columns)."""
    green = frame[:, :, 1].astype(float).mean(axis=0)
    return round(float(np.flatnonzero(green > 128).mean()))


def mjpeg_avi(path, frames, fps=25.0):
    """OpenCV's own MJPEG writer: keeps any frame size exactly (FFmpeg's rounds odd sizes down)."""
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), True)
    assert wr.isOpened()
    for f in frames:
        wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    wr.release()
    return path


def test_round_trip_mp4(tmp_path):
    path = tmp_path / "a.mp4"
    assert write_video(path, (pattern(i) for i in range(20)), fps=25) == 20
    with VideoReader(path) as r:
        assert r.size == (64, 48)
        frames = list(r)
    assert [i for i, _ in frames] == list(range(20))
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for _, f in frames)
    assert [bar_position(f) for _, f in frames] == [bar_position(pattern(i)) for i in range(20)]
    red, blue = frames[3][1][..., 0].mean(), frames[3][1][..., 2].mean()
    assert red > 150 and blue < 90  # RGB order, not BGR
    assert r.frames_decoded == 20
    assert r.fps == 25.0
    assert r.notes == []


def test_fps_and_count_come_from_decoding(tmp_path):
    path = write_video(tmp_path / "b.mp4", (pattern(i) for i in range(9)), fps=12) and tmp_path / "b.mp4"
    r = VideoReader(path)
    assert len(r.read_all()) == 9
    assert r.frames_decoded == 9
    assert abs(r.fps - 12.0) < 1e-6


def test_start_end_step(tmp_path):
    path = tmp_path / "c.mp4"
    write_video(path, (pattern(i) for i in range(20)), fps=25)
    got = list(VideoReader(path, start=3, end=15, step=4))
    assert [i for i, _ in got] == [3, 7, 11]
    assert [bar_position(f) for _, f in got] == [bar_position(pattern(i)) for i in (3, 7, 11)]
    r = VideoReader(path, start=2, step=5)
    assert r.expected_count() == 4
    assert [i for i, _ in r] == [2, 7, 12, 17]
    assert r.frames_decoded == 20


def test_sample_frames_by_seeking(tmp_path):
    path = tmp_path / "s.mp4"
    write_video(path, (pattern(i) for i in range(40)), fps=25)
    got = list(sample_frames(path, [0, 13, 26, 39, 400]))  # past the end: skipped
    assert [i for i, _ in got] == [0, 13, 26, 39]
    assert [bar_position(f) for _, f in got] == [bar_position(pattern(i)) for i in (0, 13, 26, 39)]


def test_start_past_the_end(tmp_path):
    path = tmp_path / "d.mp4"
    write_video(path, (pattern(i) for i in range(5)), fps=25)
    with pytest.raises(FommError, match="has 5 decodable frames"):
        list(VideoReader(path, start=10))


@pytest.mark.parametrize(
    "kwargs, msg", [({"start": -1}, "start"), ({"start": 5, "end": 5}, "end frame"), ({"step": 0}, "step")]
)
def test_bad_selection(tmp_path, kwargs, msg):
    path = tmp_path / "e.mp4"
    write_video(path, [pattern(0)], fps=25)
    with pytest.raises(FommError, match=msg):
        VideoReader(path, **kwargs)


def test_one_frame_video(tmp_path):
    path = tmp_path / "one.mp4"
    write_video(path, [pattern(0)], fps=24)
    r = VideoReader(path)
    frames = r.read_all()
    assert len(frames) == 1 and r.frames_decoded == 1
    assert r.fps == 24.0  # nothing to measure: the header's


def test_odd_and_huge_sizes(tmp_path):
    odd = mjpeg_avi(tmp_path / "odd.avi", [np.full((9, 17, 3), 100, np.uint8)] * 3)
    r = VideoReader(odd)
    assert r.size == (17, 9)
    assert [f.shape for f in r.read_all()] == [(9, 17, 3)] * 3
    big = mjpeg_avi(tmp_path / "big.avi", [np.full((3000, 4000, 3), 60, np.uint8)] * 2)
    r = VideoReader(big)
    assert r.size == (4000, 3000)
    assert len(r.read_all()) == 2


def test_grayscale_video(tmp_path):
    path = tmp_path / "gray.mp4"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48), False)
    for i in range(4):
        wr.write(np.full((48, 64), 60 + 40 * i, np.uint8))
    wr.release()
    frames = VideoReader(path).read_all()
    assert len(frames) == 4
    for i, f in enumerate(frames):
        assert f.shape == (48, 64, 3)
        assert np.abs(f.astype(int) - (60 + 40 * i)).mean() < 4
        assert np.abs(f[..., 0].astype(int) - f[..., 2].astype(int)).max() <= 2


def one_line(err: FommError) -> str:
    msg = str(err)
    assert "\n" not in msg and msg
    return msg


def test_missing_empty_and_not_a_video(tmp_path):
    with pytest.raises(FommError, match="not found") as e:
        VideoReader(tmp_path / "nope.mp4")
    one_line(e.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(FommError, match=r"empty \(0 bytes\)") as e:
        VideoReader(empty)
    one_line(e.value)
    text = tmp_path / "notes.mp4"
    text.write_text("these are my notes, not a video\n" * 20)
    with pytest.raises(FommError, match="cannot read .* as a video") as e:
        VideoReader(text)
    one_line(e.value)
    with pytest.raises(FommError, match="folder"):
        VideoReader(tmp_path)


def test_truncated_mp4_is_refused(tmp_path):
    path = tmp_path / "full.mp4"
    write_video(path, (pattern(i) for i in range(30)), fps=25)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # mp4v from OpenCV keeps its index (moov) at the end
    with pytest.raises(FommError, match="damaged or truncated") as e:
        VideoReader(cut)
    one_line(e.value)


def test_truncated_avi_decodes_what_decodes(tmp_path):
    path = mjpeg_avi(tmp_path / "full.avi", [pattern(i) for i in range(30)])
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    r = VideoReader(cut)
    frames = list(r)
    assert 0 < len(frames) < 30
    assert [bar_position(f) for _, f in frames] == [bar_position(pattern(i)) for i in range(len(frames))]
    assert r.frames_decoded == len(frames)
    assert len(r.notes) == 1 and "truncated" in r.notes[0] and f"after {len(frames)} of the 30" in r.notes[0]


def test_ffmpeg_stays_quiet():
    """FFmpeg's own complaints would break the CLI's one-line error: nothing may reach stderr."""
    code = (
        "import sys, tempfile, os\n"
        "from ml_core.video import VideoReader\n"
        "from ml_core.errors import FommError\n"
        "d = tempfile.mkdtemp(); p = os.path.join(d, 'x.mp4')\n"
        "open(p, 'wb').write(b'\\x00\\x00\\x00\\x18ftypmp42' + b'\\x00' * 100)\n"
        "try:\n    VideoReader(p)\nexcept FommError:\n    pass\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_to_rgb_conversions():
    gray = np.array([[0, 128, 255]], np.uint8)
    assert to_rgb(gray).tolist() == [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]]
    bgra = np.zeros((1, 2, 4), np.uint8)
    bgra[0, 0] = (255, 0, 0, 255)  # opaque blue
    bgra[0, 1] = (255, 0, 0, 0)  # transparent: black after compositing
    assert to_rgb(bgra).tolist() == [[[0, 0, 255], [0, 0, 0]]]
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert to_rgb(deep).max() == 255 and to_rgb(deep).dtype == np.uint8
    assert to_rgb(np.full((2, 2, 3), 0.5, np.float32), bgr=False)[0, 0].tolist() == [128, 128, 128]
    with pytest.raises(FommError):
        to_rgb(np.zeros((2, 2, 5), np.uint8))


def test_read_image(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGRA
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    img = read_image(tmp_path / "a.png")
    assert img.shape == (4, 6, 3) and img[1, 1].tolist() == [255, 0, 0] and img[0, 0].tolist() == [0, 0, 0]
    (tmp_path / "b.png").write_text("not an image")
    with pytest.raises(FommError, match="as an image"):
        read_image(tmp_path / "b.png")


def test_writer_is_atomic(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(target, fps=25) as w:
        w.write(pattern(0))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FommError, match="no frames"), VideoWriter(target, fps=25):
        pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FommError, match="must all be 64x48"), VideoWriter(target, fps=25) as w:
        w.write(pattern(0))
        w.write(np.zeros((10, 10, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FommError, match=r"\.mp4"):
        VideoWriter(tmp_path / "out.gif", fps=25)


def test_writer_odd_size_mp4_is_padded_not_cropped(tmp_path):
    path = tmp_path / "odd.mp4"
    write_video(path, [np.full((9, 17, 3), 200, np.uint8)] * 2, fps=25)
    frames = VideoReader(path).read_all()
    assert frames[0].shape == (10, 18, 3)
    assert np.abs(frames[0][:9, :17].astype(int) - 200).mean() < 12


# ---------------------------------------------------------------- rotation, true timing, hostile files
from avmedia import marker_frame, write_av_video, write_wav  # noqa: E402


@pytest.mark.parametrize(("rotation", "corner"), [(-90, "top-right"), (90, "bottom-left"), (180, "bottom-right")])
def test_phone_rotation_is_applied(tmp_path, rotation, corner):
    """A phone's display matrix turns the frames upright; the displayed size is reported, with a note."""
    path = write_av_video(tmp_path / "phone.mp4", [marker_frame(i) for i in range(4)], rotation=rotation)
    r = VideoReader(path)
    frames = r.read_all()
    upright = rotation % 180 != 0
    assert r.size == ((32, 64) if upright else (64, 32))
    assert frames[0].shape == ((64, 32, 3) if upright else (32, 64, 3))
    h, w = frames[0].shape[:2]
    quads = {
        "top-right": frames[0][: h // 4, -w // 4 :],
        "bottom-left": frames[0][-h // 4 :, : w // 4],
        "bottom-right": frames[0][-h // 4 :, -w // 4 :],
    }
    assert quads[corner].mean() > 200, "the white marker moved where the rotation puts it"
    assert any(f"{rotation % 360}-degree display rotation" in n for n in r.notes)


def test_variable_frame_rate_keeps_presentation_times(tmp_path):
    """Each frame's time is its own timestamp (to a millisecond), not index / averaged rate."""
    times = [0.0, 0.1, 0.15, 1.0, 1.2, 2.0, 2.01, 2.02, 3.0, 6.0]
    path = write_av_video(tmp_path / "vfr.mp4", [marker_frame(i) for i in range(10)], times=times)
    r = VideoReader(path, step=2)
    assert [i for i, _ in r] == [0, 2, 4, 6, 8]
    assert np.allclose(r.times, times[::2], atol=1e-3)
    assert any("variable frame rate" in n for n in r.notes)
    # seeking by the recorded time lands on the frame itself
    got = dict(sample_frames(path, [9], times={9: 6.0}))
    assert abs(int(got[9][-1, :, 1].mean()) - 180) < 12


class _Retimed:
    """A decoded frame with another timestamp (None: missing)."""

    def __init__(self, frame, time: float | None) -> None:
        self._frame = frame
        self.time = time

    def __getattr__(self, name):
        return getattr(self._frame, name)


def _reader_retimed(path, times: dict[int, float | None], **kwargs) -> VideoReader:
    r = VideoReader(path, **kwargs)
    r._frames = (_Retimed(f, times[i]) if i in times else f for i, f in enumerate(r._frames, start=1))
    return r


def test_many_missing_timestamps_mean_constant_rate(tmp_path):
    """A file that loses the timestamps of many frames (Megamind.avi of OpenCV's samples: 161 of 270) is timed at its
    header's constant rate, with one note, not as a variable-rate video with estimated gaps."""
    path = tmp_path / "cfr.mp4"
    write_video(path, [pattern(i) for i in range(40)], fps=25)
    # as packed B-frames come out of an AVI: a frame carries the next one's time, which then repeats
    r = _reader_retimed(path, {i: (i + 1) / 25.0 for i in range(1, 40, 2)}, start=4, step=3)
    indices = [i for i, _ in r]
    assert np.allclose(r.times, np.asarray(indices) / 25.0) and r.fps == 25.0
    assert r.notes == [
        "19 of 40 frames of cfr.mp4 have a missing or repeated timestamp: the timestamps are ignored and frames are "
        "timed at the header's 25 fps"
    ]


def test_a_stray_missing_timestamp_is_estimated(tmp_path):
    path = tmp_path / "cfr.mp4"
    write_video(path, [pattern(i) for i in range(40)], fps=25)
    r = _reader_retimed(path, {17: None})
    r.read_all()
    assert np.allclose(r.times, np.arange(40) / 25.0, atol=1e-6)
    assert r.notes == ["1 of 40 frames of cfr.mp4 have a missing or repeated timestamp: their times are estimated"]


def test_high_frame_rate_is_measured(tmp_path):
    path = write_av_video(tmp_path / "fast.mp4", [marker_frame(i) for i in range(6)], rate=1000.0)
    r = VideoReader(path)
    r.read_all()
    assert abs(r.fps - 1000.0) < 1.0 and np.allclose(r.times, np.arange(6) / 1000.0, atol=1e-4)


def test_file_name_that_is_not_utf8(tmp_path):
    src = write_video(tmp_path / "a.mp4", (pattern(i) for i in range(5)), fps=25) and tmp_path / "a.mp4"
    odd = tmp_path / os.fsdecode(b"v\xff.mp4")
    odd.write_bytes(src.read_bytes())
    assert len(VideoReader(odd).read_all()) == 5


def test_audio_only_file_is_named_so(tmp_path):
    wav = write_wav(tmp_path / "voice.wav")
    with pytest.raises(FommError, match="holds only audio") as e:
        VideoReader(wav)
    one_line(e.value)
    m4a = tmp_path / "voice.mp4"
    m4a.write_bytes((tmp_path / "voice.wav").read_bytes())  # a WAV under an .mp4 name
    with pytest.raises(FommError, match="holds only audio"):
        VideoReader(m4a)


def test_huge_image_header_is_refused_before_decoding(tmp_path):
    """A PNG declaring 60000x60000 (a few hundred bytes, 10 GB decoded) is refused from its header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")
    (tmp_path / "huge.png").write_bytes(png)
    with pytest.raises(FommError, match="60000x60000 pixels, larger than") as e:
        read_image(tmp_path / "huge.png")
    one_line(e.value)


def test_full_disk_never_replaces_a_good_video(tmp_path):
    """A write that fails (here a file size limit: EFBIG, as ENOSPC on a full disk) is one line, and the
    earlier good file is kept byte for byte."""
    good = tmp_path / "a.mp4"
    write_video(good, (pattern(i) for i in range(5)), fps=25)
    before = good.read_bytes()
    code = (
        "import resource, signal, sys, numpy as np\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))\n"
        "from ml_core.video import write_video\n"
        "from ml_core.errors import FommError\n"
        "rng = np.random.default_rng(1)\n"
        "try:\n"
        f"    write_video({str(good)!r}, [(rng.random((128, 128, 3)) * 255).astype(np.uint8) for _ in range(40)], 25)\n"
        "except FommError as e:\n"
        "    print(e); sys.exit(2)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (
        proc.stdout.strip() == f"cannot write {good}: the file is too large for this disk or account (file size "
        "limit); nothing was written"
    )
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]
