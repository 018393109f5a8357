"""Test characters and driving clips for the rest of the project (add-on tests, demo)."""

from __future__ import annotations

import os

from .head import HeadRig, build_head
from .performance import make_performance


def make_test_character(
    seed: int = 0, naming: str | dict[str, str] = "custom", with_armature: bool = False, *, bone_name: str | None = None
) -> HeadRig:
    """Build a procedural head in the CURRENT scene (nothing is cleared) and return its :class:`HeadRig`.

    ``rig.mesh`` is the mesh object (shape keys ``Basis`` + 8 keys), ``rig.names`` maps the semantic ids
    (``jaw_open``, ``smile_L``, ``smile_R``, ``blink_L``, ``blink_R``, ``brow_raise_L``,
    ``brow_raise_R``, ``pucker``) to the display names used (``naming``: "custom" draws arbitrary names
    from the seed, "arkit", "semantic", or a dict). With ``with_armature`` the mesh is skinned to the
    single bone ``rig.bone_name`` of ``rig.armature``; head motion then belongs on that pose bone.
    """
    return build_head(seed, naming, with_armature=with_armature, bone_name=bone_name)


def render_driving_clip(
    path: str | os.PathLike,
    seed: int = 0,
    n_frames: int = 50,
    size: int = 128,
    *,
    fps: int = 25,
    naming: str = "semantic",
    look_seed: int | None = None,
) -> dict:
    """Render a driving clip: a fresh scene with head ``seed`` performing ``make_performance(seed)``.

    Writes ``path`` (.mp4, needs OpenCV) and the ground truth beside it (same stem, ``.npz``); returns
    the ground-truth dict. The current Blender file is REPLACED by an empty one first.
    """
    from . import render as R

    R.reset_scene()
    rig = build_head(seed, naming)
    rig.identity = f"driving{seed}"
    perf = make_performance(seed, n_frames, fps)
    return R.render_clip(rig, perf, path, size=size, look_seed=seed if look_seed is None else look_seed)
