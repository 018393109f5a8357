"""What the benchmarks share: the machine line, load averages, peak-memory readings, child runs, RESULTS.md sections,
Pearson r, and the oracle calibration of a synthetic head (in Blender).

Imported by the benchmark scripts as ``bench._common`` (each puts the repository first on ``sys.path``). Linux only
where it reads ``/proc``: a benchmark must not report a number it could not measure, so a missing reading raises.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ml_core.retarget import Calibration

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"


def machine() -> str:
    """CPU model, visible cores, GPU, OS, Python, torch and OpenCV versions: the machine line of a result."""
    import cv2
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores visible, {gpu}, {platform.system()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, OpenCV {cv2.__version__}"
    )


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, e.g. ``"1.9 2.0 2.1"``."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def status_mib(key: str, status: Path = Path("/proc/self/status")) -> float:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ...) in MiB.

    Raises KeyError when the kernel does not report it (no ``/proc``, or an unknown key): never a made-up number."""
    try:
        text = status.read_text()
    except OSError:
        raise KeyError(f"{key}: {status} cannot be read (peak memory is measured on Linux only)") from None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(f"{key} is not in {status}")


def run_child(args: Sequence[str]) -> dict:
    """Run ``python SCRIPT ARGS`` (a fresh process, so its peak memory is its own) in the repository; the JSON
    object on its last stdout line. RuntimeError with its stderr if it fails."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _markers(section: str) -> tuple[str, str]:
    return f"<!-- section: {section}", f"<!-- end section: {section} -->"


def read_section(section: str, results: Path = RESULTS) -> str | None:
    """The text of one benchmark's section of RESULTS.md, markers included (None if it has none yet)."""
    start, end = _markers(section)
    old = results.read_text() if results.exists() else ""
    if start not in old:
        return None
    a = old.index(start)
    return old[a : old.index(end, a) + len(end)]


def replace_section(section: str, text: str, results: Path = RESULTS) -> None:
    """Put ``text`` (markers included) in place of the section, or append it; the rest of the file is kept."""
    old = results.read_text() if results.exists() else "# Benchmark results\n"
    current = read_section(section, results)
    results.write_text(old.rstrip("\n") + "\n\n" + text + "\n" if current is None else old.replace(current, text, 1))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two series (NaN when either is constant)."""
    a = np.asarray(a, float) - np.mean(a)
    b = np.asarray(b, float) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else float("nan")


def oracle_calibration(seed: int, size: int, fps: int) -> Calibration:
    """The calibration the add-on would make of synthetic head ``seed`` (arbitrary key names), from perfect
    keypoints: the projected landmarks of its neutral face, of each shape key at 1 and of the turned and nodded
    views (the synthetic camera orbited as the add-on does). In Blender (``bpy``); leaves a fresh scene holding
    that head."""
    import bpy
    from mathutils import Matrix

    from blender_fomm.calibration import POSE_ANGLE, POSE_NAMES, camera_view, face_region, pose_views
    from ml_core.retarget import Calibration
    from tools.synth import CURVE_IDS, make_test_character
    from tools.synth.render import landmark_world, project_points, setup_scene

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = setup_scene(size=size, fps=fps)
    rig = make_test_character(seed, naming="custom")
    key = rig.mesh.data.shape_keys
    names = [rig.names[sid] for sid in CURVE_IDS]

    def snap() -> np.ndarray:
        bpy.context.view_layer.update()
        return project_points(scene, landmark_world(rig))

    neutral = snap()
    poses = []
    for n in names:
        key.key_blocks[n].value = 1.0
        poses.append(snap())
        key.key_blocks[n].value = 0.0
    turned = []
    for view in pose_views(camera_view(scene.camera), face_region(rig.mesh, names)[0]):
        scene.camera.matrix_world = Matrix(view.matrix)
        turned.append(snap())
    k = len(neutral)
    return Calibration(
        names,
        neutral,
        np.stack(poses),
        pose_names=list(POSE_NAMES),
        pose_values=np.stack(turned).reshape(len(POSE_NAMES), 2, k, 2),
        meta={"pose_angle_deg": float(np.degrees(POSE_ANGLE))},
    )


def baked_values(obj: object, name: str, frames: np.ndarray) -> np.ndarray:
    """The baked shape key ``name`` of ``obj`` evaluated at scene ``frames`` (needs bpy)."""
    from blender_fomm.anim import action_fcurves
    from blender_fomm.shapekeys import shape_key_path

    action = obj.data.shape_keys.animation_data.action
    fc = next(f for f in action_fcurves(action) if f.data_path == shape_key_path(name))
    return np.array([fc.evaluate(float(f)) for f in frames])


def addon_scene(seed: int, clip_path: Path, fps: float, size: int) -> tuple[object, object]:
    """A fresh scene with the add-on enabled and synthetic head ``seed`` (arbitrary key names) as the target of the
    clip at ``clip_path``: no key reduction, the bake from frame 1. Returns the scene and the head's rig (needs bpy)."""
    import importlib

    import bpy

    from tools.synth import make_test_character
    from tools.synth.render import setup_scene

    addon_utils = importlib.import_module("addon_utils")  # importable once bpy is
    bpy.ops.wm.read_homefile(use_empty=True)
    addon_utils.enable("blender_fomm", default_set=True, handle_error=None)
    scene = setup_scene(size=size, fps=int(round(fps)))
    rig = make_test_character(seed, naming="custom")
    s = scene.fomm
    s.target_object = rig.mesh
    s.clip_path = str(clip_path)
    s.tolerance = 0.0
    s.start_frame = 1
    return scene, rig


def use_model(cache_dir: Path, checkpoint: str | os.PathLike | None, config: str | os.PathLike | None) -> None:
    """Point the add-on's worker (started by the benchmark's bakes) at ``cache_dir`` and at the model to measure:
    ``checkpoint`` / ``config`` when given, else the shipped default model."""
    os.environ["FOMM_CACHE_DIR"] = str(cache_dir)
    for key, val in (("FOMM_CHECKPOINT", checkpoint), ("FOMM_CONFIG", config)):
        if val:
            os.environ[key] = str(Path(val).resolve())
        else:
            os.environ.pop(key, None)
