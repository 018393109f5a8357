"""ml_core.framing: square boxes, padding without stretching, face boxes steady over a clip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ml_core.errors import FommError
from ml_core.framing import (
    CropBox,
    FaceDetector,
    backlash,
    crop_square,
    face_box_from_detections,
    fill_gaps,
    follow_boxes,
    follow_face_for,
    full_frame_box,
    parse_box,
    scan_faces,
    user_box,
)


def draw_face(img: np.ndarray, cx: int, cy: int, s: int) -> np.ndarray:
    """A drawn frontal face (skin oval, brows, eyes, nose shadow, mouth), blurred like a camera would.

    OpenCV's frontal-face Haar cascade fires on it, which lets the automatic framing be tested without
    shipping photographs.
    """
    cv2.ellipse(img, (cx, cy), (int(s * 0.42), int(s * 0.55)), 0, 0, 360, (190, 160, 140), -1, cv2.LINE_AA)
    for dx in (-1, 1):
        brow = (cx + int(dx * s * 0.18), cy - int(s * 0.2))
        eye = (cx + int(dx * s * 0.18), cy - int(s * 0.1))
        cv2.ellipse(img, brow, (int(s * 0.1), int(s * 0.03)), 0, 0, 360, (60, 40, 30), -1, cv2.LINE_AA)
        cv2.ellipse(img, eye, (int(s * 0.08), int(s * 0.04)), 0, 0, 360, (40, 30, 30), -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy + int(s * 0.08)), (int(s * 0.05), int(s * 0.03)), 0, 0, 360, (120, 90, 80), -1)
    cv2.ellipse(img, (cx, cy + int(s * 0.25)), (int(s * 0.14), int(s * 0.04)), 0, 0, 360, (90, 40, 40), -1)
    img[:] = cv2.GaussianBlur(img, (0, 0), max(1.0, s / 60))
    return img


def test_full_frame_box_pads_the_short_side():
    assert full_frame_box(160, 90) == CropBox(0, -35, 160)
    assert full_frame_box(90, 160) == CropBox(-35, 0, 160)
    assert full_frame_box(64, 64) == CropBox(0, 0, 64)
    assert full_frame_box(17, 9) == CropBox(0, -4, 17)


def circle_extent(img: np.ndarray) -> tuple[float, float, float, float]:
    mask = img[..., 0] > 128
    ys, xs = np.nonzero(mask)
    return xs.min(), xs.max(), ys.min(), ys.max()


@pytest.mark.parametrize("w, h", [(320, 180), (180, 320), (200, 200)])
def test_a_circle_stays_a_circle(w, h):
    frame = np.zeros((h, w, 3), np.uint8)
    cv2.circle(frame, (w // 3, h // 3), 40, (255, 255, 255), -1)
    out = crop_square(frame, full_frame_box(w, h), 128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    x0, x1, y0, y1 = circle_extent(out)
    assert abs((x1 - x0) - (y1 - y0)) <= 1  # round, not an ellipse
    expected = 80 * 128 / max(w, h)
    assert abs((x1 - x0 + 1) - expected) <= 2


def test_padding_and_placement():
    frame = np.full((100, 200, 3), 255, np.uint8)
    out = crop_square(frame, full_frame_box(200, 100), 200)  # no resize: exact pixels
    assert out[:50].max() == 0 and out[150:].max() == 0 and out[50:150].min() == 255
    part = crop_square(frame, (-50, -50, 100), 100)  # a box reaching past the top-left corner
    assert part[:50].max() == 0 and part[:, :50].max() == 0 and part[50:, 50:].min() == 255
    assert crop_square(frame, (500, 500, 50), 32).max() == 0  # wholly outside: all padding
    gray = np.full((10, 10), 7, np.uint8)
    assert crop_square(gray, (0, 0, 10), 10).shape == (10, 10, 3)


def test_crop_matches_plain_slicing_inside_the_frame():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = crop_square(frame, (30, 10, 100), 50)
    ref = cv2.resize(frame[10:110, 30:130], (50, 50), interpolation=cv2.INTER_AREA)
    assert np.array_equal(out, ref)


@pytest.mark.parametrize(
    "w, h, box, out",
    [
        (1280, 720, None, 256),
        (720, 1280, None, 256),
        (1920, 1080, None, 256),
        (4000, 3000, None, 256),
        (17, 9, None, 64),
        (300, 200, (-37, -11, 250), 64),
        (300, 200, (100, 50, 290), 96),
    ],
)
def test_padded_crops_equal_pad_then_resize(w, h, box, out):
    """The fast path (resize the frame part, then pad) must give the very pixels of padding first."""
    rng = np.random.default_rng(w + h)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    x, y, size = box or full_frame_box(w, h)
    canvas = np.zeros((size, size, 3), np.uint8)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
    canvas[y0 - y : y1 - y, x0 - x : x1 - x] = frame[y0:y1, x0:x1]
    ref = cv2.resize(canvas, (out, out), interpolation=cv2.INTER_AREA)
    assert np.array_equal(crop_square(frame, (x, y, size), out), ref)


def test_parse_and_validate_boxes():
    assert parse_box("10, 20, 300") == CropBox(10, 20, 300)
    assert parse_box("-5,-5,64") == CropBox(-5, -5, 64)
    for bad in ("10,20", "a,b,c", "1.5,2,3", "1,2,0", ""):
        with pytest.raises(FommError):
            parse_box(bad)
    assert user_box((600, 300, 200), 640, 360) == CropBox(600, 300, 200)  # partly outside is fine
    with pytest.raises(FommError, match="outside the 640x360 frame"):
        user_box((700, 0, 50), 640, 360)
    with pytest.raises(FommError, match="positive"):
        user_box((0, 0, -3), 640, 360)
    with pytest.raises(FommError):
        user_box((1, 2), 640, 360)
    assert str(CropBox(1, 2, 3)) == "1,2,3"


@pytest.mark.parametrize("missing", ["CascadeClassifier", "data"])
def test_opencv_without_haar_detector_is_one_line(monkeypatch, missing):
    """OpenCV 5 has neither CascadeClassifier nor the cascade files; some builds lack cv2.data."""
    monkeypatch.delattr(cv2, missing)
    with pytest.raises(
        FommError,
        match=r"^this OpenCV \(.+\) has no Haar face detector; install "
        r"opencv-python-headless 4\.x or give a crop box",
    ):
        FaceDetector()


def test_damaged_cascade_file_is_one_line(tmp_path):
    bad = tmp_path / "cascade.xml"
    bad.write_text("<opencv_storage>nothing</opencv_storage>")
    with pytest.raises(FommError, match="cannot load the face detector .*cascade.xml; use --crop full"):
        FaceDetector(cascade=bad)


def test_haar_finds_a_drawn_face_and_nothing_on_blank_frames():
    det = FaceDetector()
    frame = draw_face(np.full((360, 640, 3), (40, 60, 90), np.uint8), 400, 170, 150)
    face = det(frame)
    assert face is not None
    x, y, w, h = face
    assert abs((x + w / 2) - 400) < 20 and abs((y + h / 2) - 170) < 25 and 120 < w < 230
    assert det(np.full((360, 640, 3), 90, np.uint8)) is None
    disc = np.zeros((90, 160, 3), np.uint8)
    cv2.circle(disc, (80, 45), 20, (255, 200, 100), -1)
    assert det(disc) is None
    big = draw_face(np.full((1440, 2560, 3), 200, np.uint8), 1280, 700, 600)  # searched downscaled
    x, y, w, h = det(big)
    assert abs((x + w / 2) - 1280) < 60 and 450 < w < 900


def test_fill_gaps_keeps_the_last_good_box():
    a, b = (0, 0, 10, 10), (5, 5, 10, 10)
    assert fill_gaps([None, a, None, None, b, None]) == [a, a, a, a, b, b]
    assert fill_gaps([None, None]) is None
    assert fill_gaps([]) is None


def test_face_box_is_steady_and_covers_the_movement():
    rng = np.random.default_rng(1)
    dets = []
    for t in range(100):
        if t % 7 == 3:
            dets.append(None)  # missed detections
            continue
        jitter = rng.normal(0, 2, 3)
        cx = 300 + 40 * np.sin(t / 10)  # the head sways +-40 px
        dets.append((int(cx - 50 + jitter[0]), int(150 - 50 + jitter[1]), int(100 + jitter[2]), int(100 + jitter[2])))
    dets[50] = (0, 0, 30, 30)  # one false detection far away
    box = face_box_from_detections(dets, 640, 360)
    assert box is not None
    x, y, size = box
    assert 240 < size < 290  # 1.8 x face + sway range
    for d in dets:
        if d is None or d[2] < 50:
            continue
        assert x <= d[0] and d[0] + d[2] <= x + size and y <= d[1] and d[1] + d[3] <= y + size
    # gaps filled with the last good box barely move it: the box is about where the face is
    alone = face_box_from_detections([d for d in dets if d is not None], 640, 360)
    assert max(abs(a - b) for a, b in zip(alone, box, strict=True)) <= 3
    # a performer who stays still gets a box tight around the face, centred on it
    still = face_box_from_detections([(250, 100, 100, 100)] * 10, 640, 360, shift_y=0.0)
    assert still == CropBox(210, 60, 180)
    assert face_box_from_detections([None] * 5, 640, 360) is None


def test_scan_faces_with_a_fake_detector_sequence():
    seq = iter([None, (10, 10, 20, 20), None])
    frames = [np.zeros((4, 4, 3), np.uint8)] * 3
    assert scan_faces(frames, detector=lambda f: next(seq)) == [None, (10, 10, 20, 20), None]


def test_face_scale_follows_the_model():
    from ml_core.framing import FACE_SCALE, SYNTH_FACE_SCALE, face_scale_for

    assert face_scale_for(None) == FACE_SCALE == 1.8  # the authors' checkpoints: head and shoulders
    assert face_scale_for({"name": "vox-256", "dataset_params": {"frame_shape": [256, 256, 3]}}) == FACE_SCALE
    assert face_scale_for({"name": "default-64"}) == SYNTH_FACE_SCALE == 0.8  # trained on tools/synth framing
    assert face_scale_for({"name": "default-64", "dataset_params": {"face_box_scale": 1.25}}) == 1.25
    assert face_scale_for({"dataset_params": {"face_box_scale": "2"}}) == 2.0
    # the shipped model's embedded configuration gets the tight box
    from ml_core.model import load_model

    assert face_scale_for(load_model().config) == SYNTH_FACE_SCALE
    dets = [(250, 100, 100, 100)] * 10
    tight = face_box_from_detections(dets, 640, 360, scale=SYNTH_FACE_SCALE, shift_y=0.0)
    assert tight == CropBox(260, 110, 80)  # inside the face box: the head fills the crop, as in training


@pytest.mark.parametrize("bad", [0, -1, "wide", float("nan"), [1]])
def test_bad_face_box_scale_in_a_config_is_one_line(bad):
    from ml_core.framing import face_scale_for

    with pytest.raises(FommError) as info:
        face_scale_for({"dataset_params": {"face_box_scale": bad}})
    assert str(info.value) == f"dataset_params.face_box_scale must be a positive number, got {bad!r}"


def test_follow_boxes_interpolate_hold_and_scale():
    # a face moving right by 2 px per sample, found on every 10th sample
    positions = [0, 10, 20, 30]
    dets = [(100 + 2 * p, 50, 40, 40) for p in positions]
    boxes = follow_boxes(positions, dets, 41, scale=1.0, sigma=0.0, shift_y=0.0, dead_band=0.0)
    assert boxes.shape == (41, 3) and boxes.dtype == np.int64
    centre_x = boxes[:, 0] + boxes[:, 2] / 2
    assert np.allclose(centre_x[:31], 120 + 2 * np.arange(31), atol=0.5)  # interpolated between detections
    assert np.all(centre_x[30:] == centre_x[30])  # held after the last one
    assert np.all(boxes[:, 2] == 40) and np.all(boxes[:, 1] == 50)
    wide = follow_boxes(positions, dets, 41, scale=1.5, sigma=0.0, shift_y=0.1, dead_band=0.0)
    assert np.all(wide[:, 2] == 60) and np.all(wide[:, 1] == 70 - 30 + 4)  # side 1.5 x face, moved down 0.1 face
    assert follow_boxes(positions, [None] * 4, 41) is None
    assert follow_boxes([], [], 41) is None


def test_follow_boxes_outvote_a_false_alarm_and_smooth_the_jitter():
    rng = np.random.default_rng(0)
    positions = list(range(60))
    dets = [(200 + int(rng.integers(-3, 4)), 100 + int(rng.integers(-3, 4)), 80, 80) for _ in positions]
    dets[30] = (500, 300, 60, 60)  # another face, once
    dets[31] = None  # and a miss
    raw = follow_boxes(positions, dets, 60, sigma=0.0)
    assert np.abs(raw[30, :2] - raw[29, :2]).max() < 10  # the false alarm moved nothing
    smooth = follow_boxes(positions, dets, 60, sigma=4.0)
    assert np.diff(smooth[:, 0]).std() < 0.5 * np.diff(raw[:, 0]).std()  # the jitter is damped


def test_the_following_box_stays_still_for_small_motions():
    # jitter of +-1.5 px around a still face: the box does not move
    still = backlash(100.0 + 1.5 * np.sin(np.arange(50)), 2.0)
    assert np.ptp(still) == 0.0
    # a face moving 3 px a sample: the box follows at a constant lag of the band, and stays when the face stops
    path = np.concatenate([np.full(5, 100.0), 100.0 + 3.0 * np.arange(1, 21), np.full(10, 160.0)])
    moved = backlash(path, 2.0)
    assert np.allclose(moved[8:25], path[8:25] - 2.0) and np.all(moved[25:] == 158.0)
    # per-sample band (a fraction of the face size), and the boxes use it
    assert np.allclose(backlash([0.0, 5.0, 5.0], [1.0, 4.0, 1.0]), [0.0, 1.0, 4.0])
    dets = [(200 + (i % 2), 100, 80, 80) for i in range(20)]  # 1 px jitter, band 0.05 x 80 = 4 px
    boxes = follow_boxes(list(range(20)), dets, 20, sigma=0.0)
    assert np.ptp(boxes[:, 0]) == 0


def test_follow_face_for_the_models():
    assert follow_face_for({"name": "default-64"}) is True  # trained on heads that fill the frame
    assert follow_face_for({"name": "vox-256"}) is False  # head-and-shoulders crops: the steady box
    assert follow_face_for(None) is False
    assert follow_face_for({"name": "default-64", "dataset_params": {"face_box_follow": False}}) is False
    assert follow_face_for({"name": "mine", "dataset_params": {"face_box_follow": True}}) is True
    with pytest.raises(FommError, match=r"^dataset_params.face_box_follow must be true or false, got 'yes'$"):
        follow_face_for({"dataset_params": {"face_box_follow": "yes"}})
