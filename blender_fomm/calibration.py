"""Calibration through rendering: how each shape key moves the detector's keypoints on this character.

1. Frame a camera on the face: the user's camera, or an orthographic front view (looking along +Y,
   Blender's convention for characters facing -Y) centred on the vertices the selected keys move.
2. Render (Workbench, small, in a temporary scene) the neutral face and each selected key at 1.0, with
   the key's animation, NLA and drivers held off and every value restored afterwards; then the neutral
   face seen turned and nodded by a few degrees (the camera orbits the face), so that the solve can tell
   a performer's head turn from an expression.
3. The worker runs the keypoint detector on the renders (``detect-images`` job).
4. :func:`calibration_from_detections` builds the :class:`ml_core.retarget.Calibration`, saved in the
   cache folder with the renders beside it, keyed by the mesh's state, camera, render size and model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ml_core.errors import FommError
from ml_core.retarget import CALIBRATION_VERSION, Calibration

CALIBRATION_FILE = "calibration.npz"
DETECTIONS_FILE = "detections.npz"
# Framing of the automatic view, like a face crop: the frame's side is FACE_MARGIN x the region the
# shape keys move (brows to jaw, cheek to cheek), its centre FACE_LIFT x that side above the region's
# (towards the forehead). Matched to the synthetic driving videos' camera (tools/synth).
FACE_MARGIN = 1.5
FACE_LIFT = 0.18


@dataclass(frozen=True)
class View:
    """A camera for the renders: world matrix [4,4], orthographic side (0 = perspective), lens and
    sensor width (mm)."""

    matrix: tuple[tuple[float, ...], ...]
    ortho_scale: float
    lens: float
    clip_end: float
    sensor: float = 36.0

    def signature(self) -> str:
        return json.dumps([np.round(np.array(self.matrix), 6).tolist(), self.ortho_scale, self.lens, self.sensor])


def _coords(kb: bpy.types.ShapeKey) -> np.ndarray:
    co = np.empty(len(kb.data) * 3, dtype=np.float32)
    kb.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def face_region(obj: bpy.types.Object, names: Sequence[str]) -> tuple[np.ndarray, float, float]:
    """World centre, side (max of width and height seen from the front) and front-most Y of the
    vertices that the shape keys ``names`` move (all vertices if none move or the mesh has no keys)."""
    key = obj.data.shape_keys
    if key is None:
        base = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
        obj.data.vertices.foreach_get("co", base)
        base = base.reshape(-1, 3)
        names = ()
    else:
        base = _coords(key.reference_key)
    if len(base) == 0:
        raise FommError(f"'{obj.name}' has no vertices to frame")
    moved = np.zeros(len(base), dtype=bool)
    size = float(np.ptp(base, axis=0).max()) or 1.0
    for n in names:
        moved |= np.linalg.norm(_coords(key.key_blocks[n]) - base, axis=1) > 1e-4 * size
    pts = base[moved] if moved.any() else base
    mw = np.array(obj.matrix_world)
    world = pts @ mw[:3, :3].T + mw[:3, 3]
    lo, hi = world.min(axis=0), world.max(axis=0)
    side = max(float(hi[0] - lo[0]), float(hi[2] - lo[2]), 1e-3)
    all_world = base @ mw[:3, :3].T + mw[:3, 3]
    return (lo + hi) / 2, side, float(all_world[:, 1].min())


def auto_view(obj: bpy.types.Object, names: Sequence[str]) -> View:
    """A 50 mm front view framed on the face (the region the keys move, with margin), as a person
    filming the character's face would: the frame is FACE_MARGIN x the region at its depth."""
    center, side, front_y = face_region(obj, names)
    lens, sensor = 50.0, 36.0
    dist = max(side * FACE_MARGIN * lens / sensor, 2.0 * (center[1] - front_y), 1e-3)
    m = np.eye(4)
    # camera looks down its -Z: rotate X by 90 degrees -> looks along +Y, up = +Z
    m[:3, :3] = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    m[:3, 3] = (center[0], center[1] - dist, center[2] + FACE_LIFT * side)
    return View(tuple(map(tuple, m)), 0.0, lens, dist * 4, sensor)


def camera_view(cam: bpy.types.Object) -> View:
    data = cam.data
    ortho = float(data.ortho_scale) if data.type == "ORTHO" else 0.0
    return View(
        tuple(map(tuple, np.array(cam.matrix_world))),
        ortho,
        float(data.lens),
        float(data.clip_end),
        float(data.sensor_width),
    )


def view_for(obj: bpy.types.Object, names: Sequence[str], camera: bpy.types.Object | None) -> View:
    return camera_view(camera) if camera is not None else auto_view(obj, names)


POSE_ANGLE = np.radians(8.0)
POSE_NAMES = ("yaw", "pitch")


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def orbit(view: View, pivot: np.ndarray, pose: str, angle: float) -> View:
    """``view`` turned about ``pivot`` by ``angle``: about the camera's up axis ("yaw") or its right
    axis ("pitch"). Seen from there the face looks turned (or nodded) by -angle."""
    m = np.array(view.matrix, dtype=float)
    axis = m[:3, 1] if pose == "yaw" else m[:3, 0]
    rot = _rotation(axis, angle)
    out = np.eye(4)
    out[:3, :3] = rot @ m[:3, :3]
    out[:3, 3] = pivot + rot @ (m[:3, 3] - pivot)
    return View(tuple(map(tuple, out)), view.ortho_scale, view.lens, view.clip_end, view.sensor)


def pose_views(view: View, pivot: np.ndarray, angle: float = POSE_ANGLE) -> list[View]:
    """The nuisance renders' views, in calibration order: yaw +, yaw -, pitch +, pitch -."""
    return [orbit(view, pivot, pose, sign * angle) for pose in POSE_NAMES for sign in (1.0, -1.0)]


def _dependencies(obj: bpy.types.Object) -> list[bpy.types.Object]:
    """``obj`` and the objects its look depends on (parents, armature/modifier objects)."""
    out: list[bpy.types.Object] = []
    todo = [obj]
    while todo:
        o = todo.pop()
        if o is None or o in out:
            continue
        out.append(o)
        todo.append(o.parent)
        for mod in getattr(o, "modifiers", ()):
            target = getattr(mod, "object", None)
            if isinstance(target, bpy.types.Object):
                todo.append(target)
    return out


@contextlib.contextmanager
def held_shape_keys(key: bpy.types.Key) -> Iterator[list[bpy.types.ShapeKey]]:
    """Let the caller set shape-key values freely: animation, NLA and drivers are held off and every
    value, mute flag and assignment is restored on exit (whatever happens)."""
    blocks = list(key.key_blocks)
    saved = [(kb.value, kb.mute) for kb in blocks]
    adt = key.animation_data
    saved_adt = None
    if adt is not None:
        saved_adt = (
            adt.action,
            adt.action_slot if adt.action is not None else None,
            adt.use_nla,
            [d.mute for d in adt.drivers],
        )
        adt.use_nla = False
        adt.action = None
        for d in adt.drivers:
            d.mute = True
    try:
        yield blocks
    finally:
        for kb, (value, mute) in zip(blocks, saved, strict=True):
            kb.value = value
            kb.mute = mute
        if adt is not None and saved_adt is not None:
            action, slot, use_nla, mutes = saved_adt
            adt.action = action
            if action is not None and slot is not None:
                adt.action_slot = slot
            adt.use_nla = use_nla
            for d, m in zip(adt.drivers, mutes, strict=True):
                d.mute = m


@contextlib.contextmanager
def render_scene(objects: Sequence[bpy.types.Object], view: View, size: int) -> Iterator[bpy.types.Scene]:
    """A temporary Workbench scene with ``objects`` and a camera at ``view``; removed on exit."""
    scene = bpy.data.scenes.new("FOMM Calibration")
    cam_data = bpy.data.cameras.new("FOMM Calibration")
    cam = bpy.data.objects.new("FOMM Calibration", cam_data)
    try:
        for o in objects:
            scene.collection.objects.link(o)
        scene.collection.objects.link(cam)
        scene.camera = cam
        cam.matrix_world = Matrix(view.matrix)
        if view.ortho_scale > 0:
            cam_data.type = "ORTHO"
            cam_data.ortho_scale = view.ortho_scale
        cam_data.lens = view.lens
        cam_data.sensor_width = view.sensor
        cam_data.clip_end = max(view.clip_end, 1.0)
        r = scene.render
        r.engine = "BLENDER_WORKBENCH"
        r.resolution_x = r.resolution_y = int(size)
        r.resolution_percentage = 100
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGB"
        r.film_transparent = False
        scene.world = bpy.data.worlds.new("FOMM Calibration")
        scene.world.color = (0.25, 0.25, 0.25)  # a plain mid-grey backdrop, not black
        scene.display.shading.light = "STUDIO"
        scene.display.shading.color_type = "MATERIAL"
        scene.view_settings.view_transform = "Standard"
        yield scene
    finally:
        world = scene.world
        bpy.data.scenes.remove(scene)
        if world is not None and world.users == 0:
            bpy.data.worlds.remove(world)
        bpy.data.objects.remove(cam)
        bpy.data.cameras.remove(cam_data)


def cache_folder(path: Path) -> Path:
    """``path`` made (with its parents) for cache files; a one-line FommError if that is impossible (the
    cache folder is read-only, or a file is in the way)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FommError(
            f"cannot create the cache folder {path} ({exc.strerror or exc}): pick a writable cache folder in "
            "the preferences"
        ) from None
    return path


def render_still(scene: bpy.types.Scene, path: Path) -> Path:
    scene.render.filepath = str(path)
    try:
        bpy.ops.render.render(write_still=True, scene=scene.name)
    except RuntimeError:  # Blender could not save the image (read-only folder, a folder in the way)
        raise FommError(f"could not save the render {path}: check the cache folder is writable") from None
    if not path.is_file():
        raise FommError(f"rendering {path.name} produced no file: check the cache folder is writable")
    return path


def render_calibration(
    obj: bpy.types.Object, names: Sequence[str], view: View, out_dir: Path, size: int = 256
) -> list[Path]:
    """Render into ``out_dir`` the neutral face, each key in ``names`` at 1.0, then the neutral face from
    the :func:`pose_views` (turned and nodded by +/- :data:`POSE_ANGLE` about the face's centre).
    Returns the paths in that order."""
    key = obj.data.shape_keys
    cache_folder(out_dir)
    pivot = face_region(obj, names)[0]
    paths = []
    with held_shape_keys(key) as blocks, render_scene(_dependencies(obj), view, size) as scene:
        ref = key.reference_key
        for kb in blocks:
            if kb != ref:
                kb.value = 0.0
        paths.append(render_still(scene, out_dir / "neutral.png"))
        for i, n in enumerate(names):
            kb = key.key_blocks[n]
            kb.value = 1.0
            paths.append(render_still(scene, out_dir / f"key_{i:03d}.png"))
            kb.value = 0.0
        for i, pv in enumerate(pose_views(view, pivot)):
            scene.camera.matrix_world = Matrix(pv.matrix)
            name = f"pose_{POSE_NAMES[i // 2]}_{'plus' if i % 2 == 0 else 'minus'}.png"
            paths.append(render_still(scene, out_dir / name))
    return paths


def render_neutral(obj: bpy.types.Object, view: View, path: Path, size: int = 256) -> Path:
    """The neutral face (every shape key at 0) from ``view``: the neural preview's source image."""
    cache_folder(path.parent)
    key = obj.data.shape_keys
    ctx = held_shape_keys(key) if key is not None else contextlib.nullcontext([])
    with ctx as blocks, render_scene(_dependencies(obj), view, size) as scene:
        for kb in blocks:
            kb.value = 0.0
        return render_still(scene, path)


def calibration_key(obj: bpy.types.Object, names: Sequence[str], view: View, size: int, model_identity: str) -> str:
    """Hash of everything the calibration depends on: mesh, keys, placement, camera, size, model."""
    h = hashlib.sha256()
    key = obj.data.shape_keys
    h.update(json.dumps([CALIBRATION_VERSION, obj.name, list(names), size, model_identity]).encode())
    h.update(view.signature().encode())
    h.update(np.array(obj.matrix_world, dtype=np.float32).tobytes())
    h.update(_coords(key.reference_key).tobytes())
    for n in names:
        h.update(_coords(key.key_blocks[n]).tobytes())
    return h.hexdigest()[:20]


def cache_dir_for(cache_root: Path, key: str) -> Path:
    return Path(cache_root) / "calibration" / key


def cached(cache_root: Path, key: str) -> Calibration | None:
    path = cache_dir_for(cache_root, key) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return Calibration.load(path)
    except FommError:
        return None  # stale or damaged: calibrate again


def calibration_from_detections(
    detections: str | os.PathLike, names: Sequence[str], meta: dict, out_path: Path
) -> Calibration:
    """Build and save the calibration from the worker's ``detect-images`` output (neutral first)."""
    try:
        with np.load(detections, allow_pickle=False) as d:
            values = d["values"].astype(np.float64)
            jac = d["jacobians"].astype(np.float64) if bool(d["has_jacobians"]) else None
            meta = {
                **meta,
                "checkpoint_hash": str(d["checkpoint_hash"]),
                "config_hash": str(d["config_hash"]),
            }
    except (OSError, KeyError, ValueError) as exc:
        raise FommError(f"the worker's detections could not be read ({exc}); calibrate again") from None
    n, p = len(names), len(POSE_NAMES)
    if len(values) != 1 + n + 2 * p:
        raise FommError(f"expected {1 + n + 2 * p} detections, got {len(values)}; calibrate again")
    k = values.shape[1]
    calib = Calibration(
        key_names=list(names),
        neutral_values=values[0],
        key_values=values[1 : 1 + n],
        neutral_jacobians=None if jac is None else jac[0],
        key_jacobians=None if jac is None else jac[1 : 1 + n],
        meta={**meta, "pose_angle_deg": float(np.degrees(POSE_ANGLE))},
        pose_names=list(POSE_NAMES),
        pose_values=values[1 + n :].reshape(p, 2, k, 2),
        pose_jacobians=None if jac is None else jac[1 + n :].reshape(p, 2, k, 2, 2),
    )
    calib.save(out_path)
    return calib
