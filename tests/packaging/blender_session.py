"""Install an extension zip into a clean Blender user directory and exercise it (run in a subprocess).

    BLENDER_USER_RESOURCES=DIR python blender_session.py '{"zip": ..., "bake": true, "probe": true, ...}'

The caller sets ``BLENDER_USER_RESOURCES`` to an empty folder before this process starts (Blender reads
it when ``bpy`` is imported). Steps, each optional but the install:

- ``zip``: ``extensions.package_install_files(repo='user_default', enable_on_install=True)``; or
  ``repo_url``: that repository listing added as a remote repository, synced, and the extension
  installed from it. Reports the enabled module, where Blender put the extension's wheels and where
  ml_core was imported from.
- ``bake``: a small mesh with shape keys, a motion clip written with the installed ml_core, and the
  add-on's ``fomm.bake_shape_keys`` with a manual mapping; reports the baked curve and the expected
  weights (``ml_core.retarget.manual_weights``) at every scene frame.
- ``probe``: the add-on's ``fomm.check_worker`` (the worker Python comes from ``FOMM_WORKER_PYTHON``).
- ``extract``: ``{"video": ..., "worker_pythonpath": [...]}``: the add-on's ``fomm.extract_motion`` on
  the video; ``worker_pythonpath`` becomes the worker's ``PYTHONPATH`` (it inherits this process's
  environment when ``FOMM_WORKER_PYTHON`` names its interpreter).

Prints ``RESULT {json}`` as its last line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

spec = json.loads(sys.argv[1])
user_dir = os.environ.get("BLENDER_USER_RESOURCES", "")
if not user_dir or not os.path.isdir(user_dir):
    sys.exit("set BLENDER_USER_RESOURCES to an existing empty folder")

import bpy  # noqa: E402

out: dict = {"blender": bpy.app.version_string, "python": sys.version.split()[0]}

# ---- install + enable ---------------------------------------------------------------------------
ext_id = spec.get("id", "fomm_mocap")
if spec.get("repo_url"):
    # a studio's repository: the listing (index.json) written by build_addon.py, as a remote repository
    prefs = bpy.context.preferences
    prefs.system.use_online_access = True  # off by default in background mode; file:// needs it too
    for repo in prefs.extensions.repos:
        if repo.use_remote_url:
            repo.enabled = False  # never reach extensions.blender.org from a test
    bpy.ops.preferences.extension_repo_add(name="studio", remote_url=spec["repo_url"], type="REMOTE")
    studio = next(r for r in prefs.extensions.repos if r.name == "studio")
    repo_module, repo_dir = studio.module, studio.directory
    out["sync"] = sorted(bpy.ops.extensions.repo_sync(repo_directory=repo_dir))
    ret = bpy.ops.extensions.package_install(repo_directory=repo_dir, pkg_id=ext_id, enable_on_install=True)
else:
    repo_module = "user_default"
    ret = bpy.ops.extensions.package_install_files(filepath=spec["zip"], repo="user_default", enable_on_install=True)
out["install"] = sorted(ret)
module = f"bl_ext.{repo_module}.{ext_id}"
out["module"] = module
out["enabled"] = module in bpy.context.preferences.addons
out["extensions_dir"] = bpy.utils.user_resource("EXTENSIONS")
local_sites = [p for p in sys.path if p.startswith(os.path.realpath(user_dir)) or p.startswith(user_dir)]
out["local_site_packages"] = local_sites
out["addon_dir"] = str(Path(sys.modules[module].__file__).parent) if module in sys.modules else None

import ml_core  # noqa: E402
import ml_core.retarget  # noqa: E402  (numpy + scipy: what Blender's process needs)

out["ml_core_file"] = ml_core.__file__

if not out["enabled"]:
    print("RESULT " + json.dumps(out))
    sys.exit(0)

scene = bpy.context.scene
settings = scene.fomm

# ---- bake shape keys with a manual mapping --------------------------------------------------------
if spec.get("bake"):
    import numpy as np

    from ml_core.clip import MotionClip
    from ml_core.retarget import manual_weights

    mesh = bpy.data.meshes.new("Face")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)], [], [(0, 1, 2, 3)])
    obj = bpy.data.objects.new("Face", mesh)
    scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    jaw = obj.shape_key_add(name="jaw open", from_mix=False)
    jaw.data[0].co = (0, 0, -0.5)

    t, k = 24, 5
    rng = np.random.default_rng(0)
    values = np.tile(rng.uniform(-0.5, 0.5, (1, k, 2)), (t, 1, 1)).astype(np.float32)
    values[:, 2, 1] += 0.2 * np.sin(np.linspace(0, 2 * np.pi, t))  # keypoint 2 moves down and up
    clip = MotionClip(
        values=values,
        jacobians=np.broadcast_to(np.eye(2, dtype=np.float32), (t, k, 2, 2)).copy(),
        fps=float(scene.render.fps) / scene.render.fps_base,
        frame_indices=np.arange(t),
        reference_frame=0,
        crop_box=(0, 0, 64),
        video_size=(64, 64),
        num_kp=k,
        image_size=64,
        config_hash="test",
        checkpoint_hash="test",
        has_jacobians=True,
        source_path="synthetic",
        crop_mode="full",
        notes=(),
    )
    clip_path = Path(spec["workdir"]) / "clip.npz"
    clip.save(clip_path)

    settings.clip_path = str(clip_path)
    settings.target_object = obj
    settings.method = "MANUAL"
    settings.remove_head = False
    settings.smooth_sigma = 0.0
    settings.tolerance = 0.0
    settings.start_frame = 1
    bpy.ops.fomm.mapping_add()
    m = settings.mappings[0]
    m.shape_key, m.keypoint, m.axis, m.gain = "jaw open", 2, "Y", 4.0
    out["bake_ret"] = sorted(bpy.ops.fomm.bake_shape_keys())
    out["bake_report"] = settings.last_report
    key = obj.data.shape_keys
    action = key.animation_data.action if key.animation_data else None
    curve = None
    if action is not None:
        if hasattr(action, "fcurves") and bpy.app.version < (5, 0, 0):
            curves = list(action.fcurves)
        else:
            from bpy_extras import anim_utils

            bag = anim_utils.action_get_channelbag_for_slot(action, key.animation_data.action_slot)
            curves = list(bag.fcurves) if bag else []
        curve = next((c for c in curves if c.data_path == 'key_blocks["jaw open"].value'), None)
    expected = manual_weights(clip.values, 0, [(2, 1, 4.0)], remove_head=False)[:, 0]
    out["action"] = action.name if action else None
    out["baked"] = [curve.evaluate(1 + i) for i in range(t)] if curve else None
    out["expected"] = [float(v) for v in expected]

# ---- the worker, through the add-on --------------------------------------------------------------
if spec.get("probe"):
    ret = bpy.ops.fomm.check_worker()
    out["probe_ret"] = sorted(ret)

if spec.get("extract"):
    ex = spec["extract"]
    os.environ["PYTHONPATH"] = os.pathsep.join(ex.get("worker_pythonpath", []))
    os.environ["PYTHONNOUSERSITE"] = "1"
    settings.video_path = ex["video"]
    settings.crop_mode = "FULL"
    settings.smoothing = "NONE"
    out["extract_ret"] = sorted(bpy.ops.fomm.extract_motion())
    out["extract_report"] = settings.last_report
    out["clip_path"] = settings.clip_path

print("RESULT " + json.dumps(out))
