"""Blender test helpers: a fresh empty scene per test and small generated characters (bpy wheel, headless)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import bpy
import pytest
from bfomm_helpers import ADDON, FIXTURES, REPO, worker_python  # noqa: F401


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
