"""ml_core.video: streaming reader, bad files, atomic writer, colour conversions (real files, small sizes)."""

from __future__ import annotations

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
