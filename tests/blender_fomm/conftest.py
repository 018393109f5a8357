"""Blender test helpers: a fresh empty scene per test and small generated characters (bpy wheel, headless)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import bpy
import pytest
from bfomm_helpers import ADDON, FIXTURES, REPO, worker_python  # noqa: F401


@pytest.fixture(scope="session")
def fomm_root(tmp_path_factory) -> Path:
    """A session folder with the tiny fixture model's config at 64 px (and room for caches, clips)."""
    root = tmp_path_factory.mktemp("fomm")
    config = root / "tiny-64.yaml"
    config.write_text((FIXTURES / "tiny.yaml").read_text() + "\ndataset_params:\n  frame_shape: [64, 64, 3]\n")
    return root


def model_env(root: Path) -> dict[str, str]:
    """What points the add-on (no preferences set) at the tiny model and a temporary cache."""
    return {
        "FOMM_CHECKPOINT": str(FIXTURES / "tiny-cpk.pth.tar"),
        "FOMM_CONFIG": str(root / "tiny-64.yaml"),
        "FOMM_CACHE_DIR": str(root / "cache"),
    }


@pytest.fixture(scope="module", autouse=True)
def addon(fomm_root):
    """The add-on enabled for each test module, with the model/cache environment set only meanwhile
    (so nothing leaks into the rest of the suite)."""
    import addon_utils  # on sys.path once bpy is imported

    env = model_env(fomm_root)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    addon_utils.enable(ADDON, default_set=True, handle_error=None)
    yield fomm_root
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
def driving_video(fomm_root) -> Path:
    """A 16-frame 64 px synthetic driving video (tools.synth), rendered by the worker's Python (it has
    OpenCV to write the mp4), so this works under Blender 4.5's venv too."""
    out = fomm_root / "drive" / "drive.mp4"
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
def motion_clip(fomm_root, driving_video) -> Path:
    """The driving video extracted once through the add-on's worker (tiny model)."""
    from blender_fomm.worker_client import run_job

    out = fomm_root / "clips" / "drive.npz"
    env = model_env(fomm_root)
    run_job(
        {
            "kind": "extract",
            "video": str(driving_video),
            "output": str(out),
            "checkpoint": env["FOMM_CHECKPOINT"],
            "config": env["FOMM_CONFIG"],
            "device": "cpu",
            "options": {"crop": "full"},
        },
        python=worker_python(),
    )
    return out
