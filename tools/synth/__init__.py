"""Synthetic talking heads: procedural stylised heads with shape keys, natural performances, renders.

Numpy-only parts import without Blender (:mod:`.performance`, :mod:`.geometry`); the rest needs ``bpy``
and is imported on first use, so ``from tools.synth import make_performance`` works anywhere.
"""

from __future__ import annotations

import importlib
from typing import Any

from .performance import CURVE_IDS, make_performance

_LAZY = {
    "build_head": ".head",
    "HeadRig": ".head",
    "shape_key_names": ".head",
    "set_expression": ".head",
    "set_head_pose": ".head",
    "render_clip": ".render",
    "render_frames": ".render",
    "make_test_character": ".helpers",
    "render_driving_clip": ".helpers",
}

__all__ = ["CURVE_IDS", "make_performance", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
