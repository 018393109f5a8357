"""Blender test helpers: a fresh empty scene per test and small generated characters (bpy wheel, headless)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import bpy
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "fomm_reference"
ADDON = "blender_fomm"


def worker_python() -> str:
    """The Python that runs ml_core (torch): $FOMM_WORKER_PYTHON (Blender 4.5 venv), else this one."""
    return os.environ.get("FOMM_WORKER_PYTHON") or sys.executable


@pytest.fixture(scope="session", autouse=True)
def addon(tmp_path_factory):
    """The add-on enabled once for the session, pointed at the tiny fixture model and a temp cache."""
    import addon_utils  # on sys.path once bpy is imported

    root = tmp_path_factory.mktemp("fomm")
    config = root / "tiny-64.yaml"
    text = (FIXTURES / "tiny.yaml").read_text()
    config.write_text(text + "\ndataset_params:\n  frame_shape: [64, 64, 3]\n")
    saved = {k: os.environ.get(k) for k in ("FOMM_CHECKPOINT", "FOMM_CONFIG", "FOMM_CACHE_DIR")}
    os.environ["FOMM_CHECKPOINT"] = str(FIXTURES / "tiny-cpk.pth.tar")
    os.environ["FOMM_CONFIG"] = str(config)
    os.environ["FOMM_CACHE_DIR"] = str(root / "cache")
    addon_utils.enable(ADDON, default_set=True, handle_error=None)
    yield root
    addon_utils.disable(ADDON, default_set=True)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def empty_scene():
    """Every test starts from an empty file (the add-on stays registered across tests)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy.context.scene


@pytest.fixture(scope="session")
def driving_video(addon) -> Path:
    """A 16-frame 64 px synthetic driving video (tools.synth), rendered by the worker's Python (it has
    OpenCV to write the mp4), so this works under Blender 4.5's venv too."""
    out = addon / "drive" / "drive.mp4"
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from tools.synth import render_driving_clip
        render_driving_clip({str(out)!r}, seed=1, n_frames=16, size=64)
        """
    )
    subprocess.run([worker_python(), "-c", code], check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="session")
def motion_clip(addon, driving_video) -> Path:
    """The driving video extracted once through the add-on's worker (tiny model)."""
    from blender_fomm.worker_client import run_job

    out = addon / "clips" / "drive.npz"
    run_job(
        {
            "kind": "extract",
            "video": str(driving_video),
            "output": str(out),
            "checkpoint": os.environ["FOMM_CHECKPOINT"],
            "config": os.environ["FOMM_CONFIG"],
            "device": "cpu",
            "options": {"crop": "full"},
        },
        python=worker_python(),
    )
    return out


def make_head(
    name: str = "Head", keys: tuple[str, ...] = ("jaw open", "smile.L", "blink")
) -> bpy.types.Object:
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
