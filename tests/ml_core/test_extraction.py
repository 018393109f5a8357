"""ml_core.extraction with the tiny fixture model: detect, extract, reference frame, bad inputs, cancel."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch

from ml_core.errors import FommError
from ml_core.extraction import (
    Cancelled,
    choose_reference_frame,
    detect,
    extract,
    fast_detector,
    find_face_box,
    to_clip_frame,
)
from ml_core.framing import crop_square, full_frame_box
from ml_core.video import VideoReader, write_video
from tests.conftest import TINY_CKPT
from tests.ml_core.test_framing import draw_face


@pytest.fixture(scope="module")
def bundle(tiny_config):
    # Our own copy: test_fast_detector_cache edits its weights.
    from ml_core.model import load_model

    return load_model(TINY_CKPT, tiny_config)


def moving_frames(n: int, w: int = 96, h: int = 72) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        f = np.full((h, w, 3), (30, 40, 60), np.uint8)
        cv2.circle(f, (w // 2 + int(12 * np.sin(i / 3)), h // 2), h // 4, (230, 180, 120), -1)
        cv2.rectangle(f, (5, 5 + i % 10), (20, 20 + i % 10), (20, 200, 40), -1)
        frames.append(f)
    return frames


def mjpeg_avi(path, frames, fps=25.0):
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), True)
    for f in frames:
        wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    wr.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "drive.mp4"
    write_video(path, moving_frames(21), fps=25)
    return path


def test_detect_matches_the_keypoint_detector(bundle):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    values, jac = detect(bundle, frames, batch_size=2)
    assert values.shape == (5, 5, 2) and jac.shape == (5, 5, 2, 2)
    assert values.dtype == np.float32 and jac.dtype == np.float32
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().contiguous() / 255.0
    with torch.no_grad():
        ref = bundle.kp_detector(x)
    assert np.allclose(values, ref["value"].numpy(), atol=1e-5)
    assert np.allclose(jac, ref["jacobian"].numpy(), atol=1e-5)
    one, _ = detect(bundle, frames[2])  # a single frame
    assert np.allclose(one[0], values[2], atol=1e-5)


def test_fast_detector_cache(bundle):
    kp = bundle.kp_detector
    keys = list(kp.state_dict())
    fast = fast_detector(kp)
    assert fast is not kp and fast_detector(kp) is fast  # built once, then reused
    assert list(kp.state_dict()) == keys  # the bundle's module is untouched ...
    conv = next(m for m in kp.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # ... layout included
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())  # folded away
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    before = detect(bundle, frames)[0]
    with torch.no_grad():
        bundle.kp_detector.kp.weight.mul_(1.5)  # weights change in place (as an optimiser step would)
    try:
        assert fast_detector(kp) is not fast
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().contiguous() / 255.0
        with torch.no_grad():
            ref = kp(x)["value"].numpy()
        after = detect(bundle, frames)[0]
        assert np.allclose(after, ref, atol=1e-5) and not np.allclose(after, before, atol=1e-4)
    finally:
        with torch.no_grad():
            bundle.kp_detector.kp.weight.div_(1.5)
    kp.train()
    try:
        assert fast_detector(kp) is kp  # training mode: batch statistics, nothing folded
    finally:
        kp.eval()


def test_strided_downsampling_is_exact(bundle):
    import copy

    from ml_core.extraction import _strided_down, _StridedAntiAlias

    kp = copy.deepcopy(bundle.kp_detector)
    original = kp.down
    _strided_down(kp)
    assert isinstance(kp.down, _StridedAntiAlias) and kp.down.stride == 2
    x = torch.rand(3, 3, 65, 70)  # odd sizes too
    with torch.no_grad():
        assert torch.equal(kp.down(x), original(x))


def test_detect_resizes_with_inter_area(bundle):
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    small = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in big])
    assert np.allclose(detect(bundle, big)[0], detect(bundle, small)[0], atol=1e-6)
    with pytest.raises(FommError, match="square"):
        detect(bundle, np.zeros((2, 64, 32, 3), np.uint8))
    with pytest.raises(FommError, match="uint8"):
        detect(bundle, np.zeros((2, 64, 64, 3), np.float32))


def test_extract_full_frame(bundle, video):
    calls = []
    clip = extract(video, model=bundle, crop="full", batch_size=4, progress=lambda d, t: calls.append((d, t)))
    frames = VideoReader(video).read_all()
    assert clip.num_frames == 21 and clip.values.shape == (21, 5, 2) and clip.jacobians.shape == (21, 5, 2, 2)
    assert clip.frame_indices.tolist() == list(range(21))
    assert clip.fps == 25.0 and clip.video_size == (96, 72) and clip.crop_box == (0, -12, 96)
    assert clip.crop_mode == "full" and clip.has_jacobians and clip.smoothing is None and clip.notes == ()
    assert clip.config_hash == bundle.config_hash and clip.checkpoint_hash == bundle.checkpoint_hash
    assert clip.num_kp == 5 and clip.image_size == 64 and clip.source_path == str(video.resolve())
    crops = np.stack([crop_square(f, full_frame_box(96, 72), 64) for f in frames])
    values, jac = detect(bundle, crops)
    assert np.allclose(clip.values, values, atol=1e-5) and np.allclose(clip.jacobians, jac, atol=1e-5)
    assert calls[0] == (0, 21) and calls[-1] == (21, 21) and [d for d, _ in calls] == [0, 4, 8, 12, 16, 20, 21]
    assert clip.reference_frame == choose_reference_frame(clip.values)


def test_extract_selection_box_reference_and_smoothing(bundle, video):
    clip = extract(video, model=bundle, crop=(10, -5, 60), start=2, end=19, step=3, reference_frame=8)
    assert clip.frame_indices.tolist() == [2, 5, 8, 11, 14, 17]
    assert clip.reference_frame == 2 and clip.crop_box == (10, -5, 60) and clip.crop_mode == "box"
    raw = extract(video, model=bundle, crop="full")
    smooth = extract(video, model=bundle, crop="full", smooth={"min_cutoff": 0.5, "beta": 0.0})
    assert smooth.smoothing["min_cutoff"] == 0.5 and smooth.smoothing["jacobians"]["beta"] == 0.0
    assert np.abs(np.diff(smooth.values, axis=0)).mean() < np.abs(np.diff(raw.values, axis=0)).mean()
    with pytest.raises(FommError, match="not among the extracted frames"):
        extract(video, model=bundle, crop="full", start=2, step=3, reference_frame=4)
    with pytest.raises(FommError, match="did not decode"):
        extract(video, model=bundle, crop="full", reference_frame=100)


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"batch_size": 0}, "batch size"),
        ({"dtype": "fp16"}, "dtype"),
        ({"crop": "face"}, "crop box must be"),
        ({"crop": (1.5, 2, 3)}, "crop must be"),
        ({"crop": (500, 0, 10)}, "outside the 96x72 frame"),
        ({"reference_frame": "neutral"}, "reference frame"),
        ({"smooth": {"gamma": 1}}, "unknown smoothing"),
        ({"start": 50}, "decodable frames"),
    ],
)
def test_extract_refuses_bad_options(bundle, video, kwargs, msg):
    with pytest.raises(FommError, match=msg):
        extract(video, model=bundle, **{"crop": "full", **kwargs})


def test_bf16_path_is_close_to_fp32(bundle, video):
    fp32 = extract(video, model=bundle, crop="full")
    bf16 = extract(video, model=bundle, crop="full", dtype="bf16")
    assert bf16.values.dtype == np.float32
    assert np.abs(bf16.values - fp32.values).max() < 0.05


def test_auto_crop_finds_the_face(bundle, tmp_path):
    frames = [draw_face(np.full((360, 640, 3), (40, 60, 90), np.uint8), 400 + 3 * i, 170, 150) for i in range(8)]
    path = tmp_path / "face.mp4"
    write_video(path, frames, fps=25)
    notes = []
    clip = extract(path, model=bundle, crop="auto", log=notes.append)
    assert clip.crop_mode == "auto"
    x, y, size = clip.crop_box
    assert 230 < size < 360 and x < 400 - 75 and x + size > 421 + 75 and y < 170 - 80 and y + size > 170 + 80
    assert notes == ["looking for the face"]  # found in every sampled frame: nothing to report
    noface = tmp_path / "noface.mp4"
    write_video(noface, moving_frames(6), fps=25)
    empty = extract(noface, model=bundle)
    assert empty.crop_mode == "full" and empty.crop_box == (0, -12, 96)
    assert any("no face" in n for n in empty.notes)


def test_auto_crop_uses_the_models_face_scale(bundle, tmp_path):
    frames = [draw_face(np.full((180, 320, 3), (40, 60, 90), np.uint8), 160, 90, 70) for _ in range(4)]
    path = tmp_path / "still.mp4"
    write_video(path, frames, fps=25)
    loose = extract(path, model=bundle, crop="auto")  # the fixture's config names no scale: head and shoulders
    ds = bundle.config.setdefault("dataset_params", {})
    ds["face_box_scale"] = 0.8  # a model trained on crops where the head fills the frame
    try:
        tight = extract(path, model=bundle, crop="auto")
    finally:
        del ds["face_box_scale"]
    assert loose.crop_mode == tight.crop_mode == "auto"
    assert abs(tight.crop_box[2] / loose.crop_box[2] - 0.8 / 1.8) < 0.05
    centre = [(b[0] + b[2] / 2, b[1] + b[2] / 2) for b in (loose.crop_box, tight.crop_box)]
    assert np.abs(np.subtract(*centre)).max() <= 2  # same centre, only tighter


def test_keypoints_of_a_following_crop_land_where_they_are_in_the_frame():
    rng = np.random.default_rng(1)
    steady = (40, -10, 300)
    boxes = np.column_stack([rng.integers(0, 200, 5), rng.integers(-20, 100, 5), rng.integers(50, 250, 5)])
    u = rng.uniform(-1, 1, (5, 7, 2)).astype(np.float32)
    v = to_clip_frame(u, boxes, steady)
    own = boxes[:, None, :2] + (u + 1) / 2 * boxes[:, None, 2:3]  # pixels, from each frame's own crop
    clip = np.array(steady[:2]) + (v + 1) / 2 * steady[2]  # pixels, from the clip's steady box
    assert v.dtype == np.float32 and np.abs(own - clip).max() < 1e-3


def test_follow_crop_keeps_the_keypoints_on_a_moving_face(bundle, tmp_path):
    # The face crosses the frame; the fixture's untrained network sees the same crop on every frame only when the
    # crop follows the face, so its keypoints (mapped into the clip's steady box) move with the face.
    xs = [150 + 6 * i for i in range(40)]
    frames = [draw_face(np.full((240, 480, 3), (40, 60, 90), np.uint8), x, 120, 100) for x in xs]
    path = tmp_path / "crossing.mp4"
    write_video(path, frames, fps=25)
    follow = extract(path, model=bundle, crop="follow")
    steady = extract(path, model=bundle, crop="steady")
    assert follow.crop_mode == "follow" and steady.crop_mode == "auto"
    assert follow.crop_box == steady.crop_box  # the clip's frame is the steady box either way
    offset = {name: clip.to_pixels()[:, :, 0].mean(axis=1) - xs for name, clip in (("f", follow), ("s", steady))}
    inner = slice(8, 32)  # away from the ends, where the smoothed path is held
    assert np.ptp(offset["f"][inner]) < 6.0  # moved 144 px with the face, to within a few pixels
    assert np.ptp(offset["s"][inner]) > 3 * np.ptp(offset["f"][inner])
    # a selection (start, step): each sample gets the box of its own frame
    part = extract(path, model=bundle, crop="follow", start=4, step=3)
    part_offset = part.to_pixels()[:, :, 0].mean(axis=1) - np.asarray(xs)[part.frame_indices]
    assert part.crop_mode == "follow" and np.ptp(part_offset[3:9]) < 6.0
    # the fixture's config names no framing: "auto" keeps the steady box; a config can ask to follow
    assert extract(path, model=bundle, crop="auto").crop_mode == "auto"
    ds = bundle.config.setdefault("dataset_params", {})
    ds["face_box_follow"] = True
    try:
        assert extract(path, model=bundle, crop="auto").crop_mode == "follow"
    finally:
        del ds["face_box_follow"]


def test_face_box_sampling_sequential_and_by_seeking(tmp_path):
    frames = [draw_face(np.full((180, 320, 3), (40, 60, 90), np.uint8), 200, 90, 70) for _ in range(2)]
    path = tmp_path / "face.mp4"
    write_video(path, [frames[i % 2] for i in range(120)], fps=25)
    seen = []

    def detector(frame):
        seen.append(frame)
        from ml_core.framing import FaceDetector

        return FaceDetector()(frame)

    box, found, sampled = find_face_box(path, samples=40, detector=detector)  # every 3rd frame, decoded
    assert (found, sampled) == (40, 40) and len(seen) == 40
    x, y, size = box
    assert x < 200 - 35 and x + size > 200 + 35 and y < 90 - 40 and y + size > 90 + 40
    seek_box, found, sampled = find_face_box(path, samples=2, detector=detector)  # 60 apart: seeks
    assert (found, sampled) == (2, 2) and seek_box == box
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        find_face_box(path, samples=40, cancel=cancel)


def test_trajectories_grow_past_the_header_estimate():
    from ml_core.extraction import _Trajectories

    traj = _Trajectories(3, 1)  # far too small a guess: it must grow and keep the order
    for start in range(0, 200, 7):
        idx = list(range(start, min(start + 7, 200)))
        v = np.array(idx, np.float32)[:, None, None] * np.ones((1, 3, 2), np.float32)
        traj.add(idx, v, np.broadcast_to(np.eye(2, dtype=np.float32), (len(idx), 3, 2, 2)))
    indices, values, jac = traj.arrays()
    assert indices.tolist() == list(range(200)) and values.shape == (200, 3, 2) and jac.shape == (200, 3, 2, 2)
    assert np.array_equal(values[:, 0, 0], np.arange(200, dtype=np.float32))


def test_reference_frame_is_the_typical_expression():
    rng = np.random.default_rng(5)
    neutral = rng.uniform(-0.5, 0.5, (10, 2))
    frames = []
    for t in range(40):
        shape = neutral + rng.normal(0, 0.05, neutral.shape) * (1 + (t % 5))  # expressions of varying size
        angle, scale, shift = rng.uniform(-0.4, 0.4), rng.uniform(0.7, 1.3), rng.uniform(-0.3, 0.3, 2)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        frames.append(scale * shape @ rot.T + shift)  # head pose varies a lot
    rot = np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]])
    frames[27] = 1.2 * neutral @ rot.T + 0.2  # the neutral face, turned and moved
    assert choose_reference_frame(np.stack(frames)) == 27
    assert choose_reference_frame(np.zeros((1, 3, 2))) == 0
    two = np.stack([np.zeros((2, 2)), np.ones((2, 2)), np.full((2, 2), 0.4)])  # few keypoints: no alignment
    assert choose_reference_frame(two) == 2
    with pytest.raises(FommError):
        choose_reference_frame(np.zeros((0, 3, 2)))


# --------------------------------------------------------------------------------------- bad inputs
def test_bad_files_give_one_line_errors(bundle, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n" * 30)
    full = tmp_path / "full.mp4"
    write_video(full, moving_frames(20), fps=25)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    for path, msg in ((empty, "empty"), (text, "as a video"), (cut, "truncated"), (tmp_path / "no.mp4", "not found")):
        with pytest.raises(FommError, match=msg) as e:
            extract(path, model=bundle, crop="full")
        assert "\n" not in str(e.value)


def test_truncated_avi_gives_the_frames_that_decode(bundle, tmp_path):
    full = mjpeg_avi(tmp_path / "full.avi", moving_frames(30))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    notes = []
    clip = extract(cut, model=bundle, crop="full", log=notes.append)
    assert 0 < clip.num_frames < 30
    assert any("truncated" in n for n in clip.notes) and notes == list(clip.notes)


def test_one_frame_video(bundle, tmp_path):
    path = tmp_path / "one.mp4"
    write_video(path, moving_frames(1), fps=30)
    clip = extract(path, model=bundle, crop="full", smooth={})
    assert clip.num_frames == 1 and clip.reference_frame == 0 and clip.fps == 30.0


@pytest.mark.parametrize("w, h", [(4000, 3000), (17, 9)])
def test_extreme_frame_sizes(bundle, tmp_path, w, h):
    frame = np.zeros((h, w, 3), np.uint8)
    cv2.circle(frame, (w // 2, h // 2), min(w, h) // 3, (200, 150, 100), -1)
    path = mjpeg_avi(tmp_path / f"{w}x{h}.avi", [frame, frame])
    clip = extract(path, model=bundle, crop="full")
    assert clip.num_frames == 2 and clip.video_size == (w, h) and clip.crop_box == full_frame_box(w, h)
    values, _ = detect(bundle, crop_square(VideoReader(path).read_all()[0], full_frame_box(w, h), 64)[None])
    assert np.allclose(clip.values[0], values[0], atol=1e-5)


def test_grayscale_video(bundle, tmp_path):
    path = tmp_path / "gray.mp4"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 72), False)
    for f in moving_frames(5):
        wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY))
    wr.release()
    clip = extract(path, model=bundle, crop="full")
    assert clip.num_frames == 5 and np.isfinite(clip.values).all()


# ------------------------------------------------------------------------------------ cancelling
def test_cancel_stops_cleanly(bundle, tmp_path):
    path = tmp_path / "long.mp4"
    write_video(path, moving_frames(60), fps=25)
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled):
        extract(path, model=bundle, crop="full", batch_size=2, cancel=cancel)
    assert isinstance(Cancelled(), KeyboardInterrupt)  # handled like Ctrl-C by the CLI and the worker
    assert not [t for t in threading.enumerate() if t.name == "fomm-video-reader"]

    def interrupt(done: int, total: int | None) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract(path, model=bundle, crop="full", batch_size=2, progress=interrupt)
    assert not [t for t in threading.enumerate() if t.name == "fomm-video-reader"]


def _face_then_gone(n_face: int = 3, n_black: int = 2, n_empty: int = 10) -> list[np.ndarray]:
    """A head in frame, then black frames (the lens covered), then the room without the head."""
    rng = np.random.default_rng(3)
    room = cv2.GaussianBlur(rng.integers(60, 140, (240, 320, 3), dtype=np.uint8), (0, 0), 2)
    face = [draw_face(room.copy(), 160, 120, 150) for _ in range(n_face)]
    return face + [np.zeros_like(room)] * n_black + [room.copy() for _ in range(n_empty)]


def test_automatic_reference_is_never_blank_nor_faceless(bundle, tmp_path):
    """Issue 16, item 8: when the head slid out of the picture an all-black frame was chosen."""
    path = tmp_path / "gone.mp4"
    write_video(path, _face_then_gone(), fps=25)
    clip = extract(path, model=bundle, crop="full")
    assert choose_reference_frame(clip.values) >= 3, "the most typical keypoints are those of a frame without the face"
    assert clip.frame_indices[clip.reference_frame] < 3, clip.notes
    assert any("shows no face" in n for n in clip.notes)
    black = tmp_path / "black.mp4"
    write_video(black, [np.zeros((64, 64, 3), np.uint8)] * 3 + [moving_frames(1, 64, 64)[0]], fps=25)
    assert extract(black, model=bundle, crop="full").reference_frame == 3  # the one frame with something in it


def test_rotated_and_variable_rate_video_extracts_upright_with_true_times(bundle, tmp_path):
    """Issue 16, items 6 and 7: a portrait phone video is recorded with its displayed size; each sample keeps
    its presentation time (within a millisecond), not index / an averaged rate."""
    from tests.ml_core.avmedia import write_av_video

    times = [0.0, 0.05, 0.1, 0.5, 0.55, 1.0, 1.5, 1.51, 2.0, 6.0]
    land = [cv2.resize(f, (96, 64)) for f in moving_frames(10)]
    path = write_av_video(tmp_path / "phone.mp4", land, times=times, rotation=90)
    clip = extract(path, model=bundle, crop="full")
    assert clip.video_size == (64, 96)
    assert np.allclose(clip.times, times, atol=1e-3)
    assert abs(clip.times[3] - 0.5) < 1e-3 and abs(clip.frame_indices[3] / clip.fps - 0.5) > 1.0  # not averaged
    assert any("display rotation" in n for n in clip.notes) and any("variable frame rate" in n for n in clip.notes)
    from ml_core.clip import load_clip

    clip.save(tmp_path / "c.npz")
    assert np.array_equal(load_clip(tmp_path / "c.npz").times, clip.times)
