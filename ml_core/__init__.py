"""ml_core: the PyTorch core of the FOMM Blender extension (no bpy here).

Public API (imported lazily, so numpy-only parts such as :mod:`ml_core.retarget` and
:mod:`ml_core.clip` can be used where torch is absent, e.g. inside Blender):

- :func:`load_model`, :func:`build_model` - networks and checkpoints (``ml_core.model``)
- :func:`relative_motion` - the paper's relative keypoint/Jacobian transfer (``ml_core.motion``)
- :func:`extract`, :class:`MotionClip`, :func:`load_clip` - driving video to motion clip
- :func:`animate` - neural preview (source image animated by a clip)
- :class:`FommError` - the one-line user-facing error
"""

from __future__ import annotations

import importlib
from typing import Any

from ml_core.errors import FommError

__version__ = "0.1.0"

_LAZY = {
    "load_model": "ml_core.model",
    "build_model": "ml_core.model",
    "ModelBundle": "ml_core.model",
    "relative_motion": "ml_core.motion",
    "extract": "ml_core.extraction",
    "MotionClip": "ml_core.clip",
    "load_clip": "ml_core.clip",
    "animate": "ml_core.animation",
}

__all__ = ["FommError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ml_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
