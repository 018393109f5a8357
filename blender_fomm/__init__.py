"""FOMM motion capture for Blender: driving video -> motion clip -> shape-key and bone animation.

The add-on never imports torch: the networks run in a worker process (``python -m ml_core worker``),
see :mod:`.worker_client`. Panels live in the 3D View's sidebar, tab "FOMM".
"""

from __future__ import annotations

from . import export_ops, operators, prefs, props, ui

_modules = (props, prefs, operators, ui, export_ops)


def register() -> None:
    for module in _modules:
        module.register()


def unregister() -> None:
    for module in reversed(_modules):
        module.unregister()
