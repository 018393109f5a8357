import pytest


@pytest.fixture
def bpy_scene():
    """A fresh, empty Blender file (skips where the bpy wheel is missing)."""
    pytest.importorskip("bpy")
    from tools.synth import render

    return render.reset_scene()
