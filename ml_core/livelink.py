"""Live Link Face CSV: the take format of Epic's iPhone app, read by Unreal's importer, Faceit and others.

No torch, no bpy. The header is the app's, exactly (63 columns; importers read by position, Faceit takes
columns 2-53 as the 52 shapes): ``Timecode``, ``BlendShapeCount`` (always 61: 52 shapes + 9 angles), the 52 ARKit
shapes in the app's order (:data:`ml_core.arkit.ARKIT_NAMES`), then ``HeadYaw, HeadPitch, HeadRoll`` and the six
eye angles, in radians. One row per frame; ``Timecode`` is ``HH:MM:SS:FF.fff`` (hours, minutes, seconds, the frame
within the second and its fraction) at the take's frame rate.

Head angles: :mod:`ml_core.headpose` measures yaw, pitch and roll about the calibrated view's up, right and forward
axes (the camera looking at the face). ARKit's face frame has +x towards the face's own left, +y up and +z out of
the face towards the viewer; its yaw (about +y) and pitch (about +x) turn the same way as ours, its roll (about +z,
towards the viewer) the opposite way: :data:`HEAD_SIGNS`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from ml_core.arkit import ARKIT_NAMES, livelink_name
from ml_core.errors import FommError

SHAPE_COLUMNS: tuple[str, ...] = tuple(livelink_name(n) for n in ARKIT_NAMES)
ANGLE_COLUMNS: tuple[str, ...] = (
    "HeadYaw",
    "HeadPitch",
    "HeadRoll",
    "LeftEyeYaw",
    "LeftEyePitch",
    "LeftEyeRoll",
    "RightEyeYaw",
    "RightEyePitch",
    "RightEyeRoll",
)
HEADER: tuple[str, ...] = ("Timecode", "BlendShapeCount", *SHAPE_COLUMNS, *ANGLE_COLUMNS)
BLENDSHAPE_COUNT = len(SHAPE_COLUMNS) + len(ANGLE_COLUMNS)  # 61, as the app writes
#: Multiply (yaw, pitch, roll) of :mod:`ml_core.headpose` by these to get the app's HeadYaw, HeadPitch, HeadRoll.
HEAD_SIGNS: tuple[float, float, float] = (1.0, 1.0, -1.0)


def timecode(frame: int | float, fps: float) -> str:
    """``HH:MM:SS:FF.fff`` of scene ``frame`` at ``fps`` (frame 0 = 00:00:00:00.000, like Blender's own
    timecode); ``FF.fff`` is the frame within the second, with its fraction for rates that are not whole."""
    if not fps > 0:
        raise FommError(f"scene frame rate {fps} is not positive")
    # thousandths of a frame, in integers so that no rounding ever writes frame 30.000 at 30 fps
    milli = int(round(float(frame) * 1000))
    if milli < 0:
        raise FommError(f"frame {frame} is before frame 0: move the take to start at frame 0 or later")
    per_second = fps * 1000
    seconds = int(math.floor(milli / per_second + 1e-9))
    within = milli - int(round(seconds * per_second))
    if within < 0:
        seconds, within = seconds - 1, within + int(round(per_second))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}:{within // 1000:02d}.{within % 1000:03d}"


def take_rows(
    frames: Sequence[int] | np.ndarray,
    fps: float,
    shapes: Mapping[str, np.ndarray],
    head: np.ndarray | None = None,
) -> list[list[str]]:
    """The CSV rows (header first) for ``frames`` [M]: ``shapes`` maps ARKit names (any spelling Apple's or the
    app's, see :func:`ml_core.arkit.arkit_name`) to [M] values in [0, 1] (others are 0); ``head`` [M,3] is
    (yaw, pitch, roll) radians of :mod:`ml_core.headpose` (None: 0). Eye angles are 0 (not measured)."""
    from ml_core.arkit import arkit_name

    frames = np.asarray(frames)
    m = len(frames)
    if m == 0:
        raise FommError("nothing baked to export: bake the shape keys first")
    table = np.zeros((m, len(HEADER) - 2))
    for name, values in shapes.items():
        canonical = arkit_name(name)
        if canonical is None:
            raise FommError(f"{name!r} is not one of ARKit's 52 blendshape names")
        v = np.asarray(values, dtype=np.float64).ravel()
        if len(v) != m:
            raise FommError(f"{name}: {len(v)} values for {m} frames")
        table[:, ARKIT_NAMES.index(canonical)] = np.clip(v, 0.0, 1.0)
    if head is not None:
        h = np.asarray(head, dtype=np.float64)
        if h.shape != (m, 3):
            raise FommError(f"head angles {h.shape} do not match {m} frames x 3")
        table[:, len(SHAPE_COLUMNS) : len(SHAPE_COLUMNS) + 3] = h * np.asarray(HEAD_SIGNS)
    if not np.all(np.isfinite(table)):
        raise FommError("the take has non-finite values; bake again")
    rows = [list(HEADER)]
    for f, vals in zip(frames, table, strict=True):
        rows.append([timecode(f, fps), str(BLENDSHAPE_COUNT), *(_num(v) for v in vals)])
    return rows


def _num(v: float) -> str:
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def write_take(path: str | os.PathLike, rows: list[list[str]]) -> None:
    """Write ``rows`` as the CSV at ``path``, atomically (no partial file on failure); one-line FommError if the
    path cannot be written."""
    from ml_core.fileio import atomic_path

    path = os.fspath(path)
    if not path:
        raise FommError("no CSV path: pick where to save the Live Link Face CSV")
    if os.path.isdir(path):
        raise FommError(f"cannot write the CSV {path}: it is a folder; pick a file name")
    try:
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write("\n".join(",".join(r) for r in rows) + "\n")
    except OSError as exc:
        raise FommError(f"cannot write the CSV {path} ({exc.strerror or exc}): pick a writable folder") from None
