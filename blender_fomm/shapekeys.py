"""Bake motion onto shape keys: weights per clip sample -> scene frames -> F-curves on the Key datablock.

The weights come from :func:`ml_core.retarget.solve_weights` (calibrated through renders, see
:mod:`.calibration`) or :func:`ml_core.retarget.manual_weights` (keypoint + axis -> key, with gain).
Curves are ``key_blocks["name"].value`` on the mesh's Key datablock, in a new action made by
:func:`.anim.write_action` (a slot of type KEY).
"""

from __future__ import annotations

from collections.abc import Sequence

import bpy
import numpy as np

from ml_core.errors import FommError
from ml_core.retarget import resample

from . import persist
from .anim import Curve, WriteReport, write_action

KIND = "shape_keys"
GROUP = "FOMM Shape Keys"


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def shape_key_path(name: str) -> str:
    return f'key_blocks["{bpy.utils.escape_identifier(name)}"].value'


def bakeable_keys(obj: bpy.types.Object | None) -> list[str]:
    """Names of the object's shape keys other than the reference (basis) key."""
    if obj is None or obj.type != "MESH" or obj.data.shape_keys is None:
        return []
    key = obj.data.shape_keys
    ref = key.reference_key
    return [kb.name for kb in key.key_blocks if kb != ref]


def target_key(obj: bpy.types.Object | None, names: Sequence[str] | None = None) -> bpy.types.Key:
    """The Key datablock to bake onto; FommError naming what is missing otherwise."""
    if obj is None:
        raise FommError("no target object: pick the character's mesh in the Target panel")
    if obj.type != "MESH":
        kind = obj.type.lower().replace("_", " ")
        article = "an" if kind[0] in "aeiou" else "a"
        raise FommError(f"'{obj.name}' is {article} {kind}, not a mesh: pick a mesh with shape keys")
    available = bakeable_keys(obj)
    if not available:
        raise FommError(f"'{obj.name}' has no shape keys besides its basis: add some, or bake to bones")
    if names is not None:
        if not names:
            raise FommError("no shape keys selected: tick at least one in the Bake panel")
        missing = [n for n in names if n not in available]
        if missing:
            raise FommError(f"'{obj.name}' has no shape key {missing[0]!r}: refresh the key list")
    key = obj.data.shape_keys
    persist.check_key_persists(obj, key)  # a linked mesh or Key would lose the bake on reload
    persist.check_keys_take_effect(obj, key, () if names is None else names)
    return key


def clip_to_frames(
    times: np.ndarray, values: np.ndarray, scene: bpy.types.Scene, start_frame: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Clip samples at ``times`` (seconds) -> one value per scene frame from ``start_frame``."""
    start = scene.frame_start if start_frame is None else int(start_frame)
    times = np.asarray(times, dtype=np.float64)
    return resample(times - times[0], values, scene_fps(scene), start)


def bake_weights(
    obj: bpy.types.Object,
    names: Sequence[str],
    frames: np.ndarray,
    weights: np.ndarray,
    *,
    placement: str = "ACTIVE",
    tolerance: float = 0.0,
) -> WriteReport:
    """Write ``weights`` [M, len(names)] at ``frames`` [M] as shape-key curves (values clipped to [0,1])."""
    key = target_key(obj, names)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape != (len(frames), len(names)):
        raise FommError(f"weights {weights.shape} do not match {len(frames)} frames x {len(names)} keys")
    weights = np.clip(weights, 0.0, 1.0)
    curves = [Curve(shape_key_path(n), 0, frames, weights[:, i], GROUP) for i, n in enumerate(names)]
    return write_action(key, curves, kind=KIND, placement=placement, tolerance=tolerance)
