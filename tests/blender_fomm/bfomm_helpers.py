"""Helpers shared by the add-on tests (a module name of its own: tests/conftest.py is also 'conftest')."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bpy
import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "data" / "fomm_reference"
ADDON = "blender_fomm"


def worker_python() -> str:
    """The Python that runs ml_core (torch): $FOMM_WORKER_PYTHON (Blender 4.5 venv), else this one."""
    return os.environ.get("FOMM_WORKER_PYTHON") or sys.executable


def make_head(name: str = "Head", keys: tuple[str, ...] = ("jaw open", "smile.L", "blink")) -> bpy.types.Object:
    """A small grid 'face' (2 x 2.4 units, facing -Y) with a basis and the given shape keys, each
    moving a different region of vertices."""
    xs, zs = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1.2, 1.2, 11))
    verts = [(float(x), 0.0, float(z)) for x, z in zip(xs.ravel(), zs.ravel(), strict=True)]
    faces = []
    for r in range(10):
        for c in range(8):
            i = r * 9 + c
            faces.append((i, i + 1, i + 10, i + 9))
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    co = np.array(verts)
    for i, kname in enumerate(keys):
        kb = obj.shape_key_add(name=kname, from_mix=False)
        moved = co.copy()
        region = np.abs(co[:, 2] - (-0.8 + 0.8 * (i % 3))) < 0.3
        moved[region, 2] -= 0.2
        kb.data.foreach_set("co", moved.ravel())
    return obj


def make_rig(name: str = "Rig", head_bone: str = "Head") -> bpy.types.Object:
    """An armature with a root, a neck and a head bone (pointing up), made through edit mode."""
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    root = arm.edit_bones.new("Root")
    root.head, root.tail = (0, 0, 0), (0, 0, 1)
    neck = arm.edit_bones.new("Neck")
    neck.head, neck.tail, neck.parent = (0, 0, 1), (0, 0, 1.3), root
    head = arm.edit_bones.new(head_bone)
    head.head, head.tail, head.parent = (0, 0, 1.3), (0, 0, 1.8), neck
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj
