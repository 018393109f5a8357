"""ml_core.arkit (the 52 names in their spellings) and ml_core.livelink (the Live Link Face CSV), without Blender."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ml_core.arkit import ARKIT_NAMES, arkit_name, guess_mapping, livelink_name, underscore_name
from ml_core.errors import FommError
from ml_core.livelink import BLENDSHAPE_COUNT, HEAD_SIGNS, HEADER, take_rows, timecode, write_take

# The app's header, verbatim (issue 14): importers read it by position.
APP_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,EyeSquintLeft,"
    "EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,EyeSquintRight,"
    "EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,MouthLeft,"
    "MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,MouthStretchLeft,"
    "MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,MouthShrugUpper,MouthPressLeft,MouthPressRight,"
    "MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,"
    "BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,"
    "TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
)


def test_the_52_names_and_the_header():
    assert len(ARKIT_NAMES) == 52 == len(set(ARKIT_NAMES))
    assert ",".join(HEADER) == APP_HEADER
    assert len(HEADER) == 63 and BLENDSHAPE_COUNT == 61
    # Faceit reads the shapes by position: columns 2-53 (0-based) are the 52 shapes
    assert [livelink_name(n) for n in ARKIT_NAMES] == list(HEADER[2:54])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("jawOpen", "jawOpen"),  # Apple
        ("JawOpen", "jawOpen"),  # Live Link Face
        ("jaw_Open", "jawOpen"),  # underscore style
        ("JAWOPEN", "jawOpen"),
        ("eyeBlink_L", "eyeBlinkLeft"),
        ("eyeBlink_R", "eyeBlinkRight"),
        ("EyeBlinkL", "eyeBlinkLeft"),
        ("eye_blink_left", "eyeBlinkLeft"),
        ("mouthSmile_L", "mouthSmileLeft"),
        ("mouthRollLower", "mouthRollLower"),
        ("mouthRollUpper", "mouthRollUpper"),
        ("browInnerUp", "browInnerUp"),
        ("blendShape1.jawOpen", "jawOpen"),  # Maya/FBX namespace
        ("Face:EyeBlinkRight", "eyeBlinkRight"),
        ("jawOpen.001", "jawOpen"),  # Blender's duplicate suffix
        ("tongue out", "tongueOut"),
        ("Smile", None),  # custom names map by hand
        ("Key 1", None),
        ("jawOpenWide", None),
        ("", None),
        ("eyeBlink_X", None),
    ],
)
def test_arkit_name_reads_every_spelling(name, expected):
    assert arkit_name(name) == expected


def test_every_name_round_trips_through_each_spelling():
    for n in ARKIT_NAMES:
        for spelled in (n, livelink_name(n), underscore_name(n), n.upper(), n.lower()):
            assert arkit_name(spelled) == n, spelled


def test_guess_mapping_takes_each_shape_once():
    mapping = guess_mapping(["Basis2", "jawOpen", "JawOpen", "eyeBlink_L", "Smile"])
    assert mapping == {"jawOpen": "jawOpen", "eyeBlink_L": "eyeBlinkLeft"}


@pytest.mark.parametrize(
    ("frame", "fps", "expected"),
    [
        (0, 30, "00:00:00:00.000"),
        (1, 30, "00:00:00:01.000"),
        (29, 30, "00:00:00:29.000"),
        (30, 30, "00:00:01:00.000"),
        (30 * 3661 + 7, 30, "01:01:01:07.000"),
        (60, 60, "00:00:01:00.000"),
        (25, 24, "00:00:01:01.000"),
        (30, 29.97, "00:00:01:00.030"),  # 30 frames at 29.97 fps are 0.03 frames past one second
        (2.5, 25, "00:00:00:02.500"),
    ],
)
def test_timecode(frame, fps, expected):
    assert timecode(frame, fps) == expected


def test_timecode_bad_input():
    with pytest.raises(FommError, match="not positive"):
        timecode(1, 0)
    with pytest.raises(FommError, match="before frame 0"):
        timecode(-1, 30)


def test_take_rows_place_values_by_name_and_sign_the_head():
    frames = np.arange(1, 5)
    jaw = np.array([0.0, 0.25, 1.0, 1.5])
    head = np.array([[0.1, 0.2, 0.3]] * 4)
    rows = take_rows(frames, 25.0, {"jaw_Open": jaw, "EyeBlinkLeft": np.full(4, 0.5)}, head)
    assert rows[0] == list(HEADER) and len(rows) == 5
    for row, f, j in zip(rows[1:], frames, jaw, strict=True):
        assert len(row) == 63 and row[0] == timecode(f, 25.0) and row[1] == "61"
        assert float(row[HEADER.index("JawOpen")]) == min(j, 1.0)
        assert float(row[HEADER.index("EyeBlinkLeft")]) == 0.5
        assert float(row[HEADER.index("EyeBlinkRight")]) == 0.0
        got = [float(row[HEADER.index(c)]) for c in ("HeadYaw", "HeadPitch", "HeadRoll")]
        assert got == pytest.approx(np.array([0.1, 0.2, 0.3]) * HEAD_SIGNS)
        assert all(float(v) == 0.0 for v in row[-6:])


def test_take_rows_bad_input():
    with pytest.raises(FommError, match="nothing baked"):
        take_rows([], 25.0, {})
    with pytest.raises(FommError, match="not one of ARKit's 52"):
        take_rows([1], 25.0, {"Smile": np.zeros(1)})
    with pytest.raises(FommError, match="2 values for 1 frames"):
        take_rows([1], 25.0, {"jawOpen": np.zeros(2)})
    with pytest.raises(FommError, match="head angles"):
        take_rows([1], 25.0, {"jawOpen": np.zeros(1)}, np.zeros((2, 3)))
    with pytest.raises(FommError, match="non-finite"):
        take_rows([1], 25.0, {"jawOpen": np.zeros(1)}, np.full((1, 3), np.nan))


def test_write_take_is_atomic_and_readable(tmp_path):
    rows = take_rows([1, 2], 30.0, {"jawOpen": np.array([0.1, 0.2])})
    out = tmp_path / "take.csv"
    write_take(out, rows)
    with open(out, newline="") as f:
        back = list(csv.reader(f))
    assert back == rows
    assert [p.name for p in tmp_path.iterdir()] == ["take.csv"]


def test_write_take_unwritable_paths_leave_nothing(tmp_path):
    rows = take_rows([1], 30.0, {"jawOpen": np.array([0.1])})
    blocker = tmp_path / "file.txt"
    blocker.write_text("user data")
    with pytest.raises(FommError, match=r"cannot write .*take\.csv.*(pick a writable folder|is a file, not a folder)"):
        write_take(blocker / "take.csv", rows)
    with pytest.raises(FommError, match="it is a folder"):
        write_take(tmp_path, rows)
    with pytest.raises(FommError, match="no CSV path"):
        write_take("", rows)
    assert blocker.read_text() == "user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
