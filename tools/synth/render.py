"""Render a performance of a head: scene set-up, per-clip look, keyframes, one animation render, landmarks.

Landmarks follow the networks' convention: x right, y down, both in [-1, 1], where -1 and +1 are the
CENTRES of the first and last pixel (``x = 2 * px / (W - 1) - 1`` with ``px`` the pixel-centre
coordinate, 0 = centre of the left column), the grid of FOMM's ``make_coordinate_grid`` and of
``grid_sample(align_corners=True)``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import bpy
import numpy as np
from bpy_extras import anim_utils
from mathutils import Vector

from .geometry import HEAD_CENTRE_Z
from .head import HeadRig, head_pose_values

STUDIO_LIGHTS = ("Default", "basic.sl", "outdoor.sl", "paint.sl", "rim.sl", "studio.sl")


def reset_scene() -> bpy.types.Scene:
    """Empty the current file (factory settings, no objects)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def setup_scene(size: int = 128, fps: int = 25, *, aa: str = "5", light: str = "STUDIO") -> bpy.types.Scene:
    """Workbench at ``size`` x ``size``, standard colour transform, a camera framing the head.

    ``aa``: Workbench anti-aliasing samples ("OFF", "FXAA", "5", "8", ...; 5 is ~1.7x faster than 8);
    ``light``: "STUDIO" (shaded) or "FLAT" (material colours exactly, for tests).
    """
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x = scene.render.resolution_y = int(size)
    scene.render.resolution_percentage = 100
    scene.render.fps = int(fps)
    scene.render.fps_base = 1.0
    scene.render.film_transparent = False
    scene.render.use_compositing = False
    scene.render.use_sequencer = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.render.image_settings.compression = 0
    scene.display.render_aa = aa
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    sh = scene.display.shading
    sh.light = light
    sh.color_type = "MATERIAL"
    sh.show_specular_highlight = True
    if scene.world is None:
        scene.world = bpy.data.worlds.new("SynthWorld")
    if scene.camera is None:
        cam = bpy.data.cameras.new("SynthCamera")
        cam_ob = bpy.data.objects.new("SynthCamera", cam)
        scene.collection.objects.link(cam_ob)
        scene.camera = cam_ob
    frame_camera(scene.camera)
    return scene


def frame_camera(
    cam_ob: bpy.types.Object, *, distance: float = 3.15, height: float = 0.0, side: float = 0.0, lens: float = 50.0
) -> None:
    """Point the camera at the face from the front (-Y), head filling most of the frame."""
    cam = cam_ob.data
    cam.type = "PERSP"
    cam.lens = lens
    cam.sensor_fit = "AUTO"
    cam.sensor_width = 36.0
    cam.clip_start, cam.clip_end = 0.1, 50.0
    target = Vector((side, 0.0, HEAD_CENTRE_Z - 0.1 + height))
    cam_ob.location = target + Vector((0.0, -distance, 0.0))
    cam_ob.rotation_euler = (math.pi / 2, 0.0, 0.0)


def apply_look(scene: bpy.types.Scene, seed: int) -> dict:
    """Per-clip lighting, background colour and small framing jitter drawn from ``seed``."""
    rng = np.random.default_rng([int(seed), 0x1007])
    sh = scene.display.shading
    light = str(STUDIO_LIGHTS[rng.integers(len(STUDIO_LIGHTS))])
    try:
        sh.studio_light = light
    except TypeError:  # a name this Blender does not ship
        light = sh.studio_light
    sh.studiolight_rotate_z = float(rng.uniform(-1.2, 1.2))
    sh.show_shadows = bool(rng.random() < 0.4)
    if sh.show_shadows:
        sh.shadow_intensity = float(rng.uniform(0.2, 0.5))
        scene.display.light_direction = tuple(
            Vector((rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.2), 1.0)).normalized()
        )
    sh.show_cavity = False
    hsv = (rng.uniform(0, 1), rng.uniform(0.05, 0.6), rng.uniform(0.15, 0.9))
    rgb = _hsv_to_rgb(*hsv)
    scene.world.color = tuple(float(c) ** 2.2 for c in rgb)
    jitter = {
        "distance": float(rng.uniform(2.95, 3.35)),
        "height": float(rng.uniform(-0.06, 0.06)),
        "side": float(rng.uniform(-0.06, 0.06)),
    }
    frame_camera(scene.camera, **jitter)
    return {"studio_light": light, "background_srgb": [float(c) for c in rgb], **jitter}


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


# ----------------------------------------------------------------------------------------- keyframes


def _fcurves(id_data: bpy.types.ID):
    """The F-curve collection of ``id_data``'s action (slotted actions in 4.4+, legacy before)."""
    ad = id_data.animation_data
    action = ad.action
    if hasattr(ad, "action_slot") and ad.action_slot is not None:
        return anim_utils.action_get_channelbag_for_slot(action, ad.action_slot).fcurves
    return action.fcurves  # pragma: no cover - Blender < 4.4


def _key_channel(owner, id_data, path: str, values: np.ndarray, frame_start: int) -> None:
    """Key ``values`` [T, C] on ``path`` (indices 0..C-1, or a scalar when C == 1 and no index)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        values = values[:, None]
    n, c = values.shape
    # one keyframe_insert per array creates action, slot, channelbag and F-curves in any version
    owner.keyframe_insert(path.rsplit(".", 1)[-1], frame=frame_start)
    full = path
    fcs = _fcurves(id_data)
    frames = np.arange(frame_start, frame_start + n, dtype=np.float32)
    for i in range(c):
        fc = fcs.find(full, index=i if c > 1 else 0)
        if fc is None:
            raise RuntimeError(f"no F-curve for {full}[{i}]")
        fc.keyframe_points.clear()
        fc.keyframe_points.add(n)
        co = np.empty((n, 2), dtype=np.float32)
        co[:, 0] = frames
        co[:, 1] = values[:, i]
        fc.keyframe_points.foreach_set("co", co.ravel())
        fc.keyframe_points.foreach_set("interpolation", np.ones(n, dtype=np.int32))  # LINEAR
        fc.update()


def clear_animation(rig: HeadRig) -> None:
    for id_data in (rig.mesh.data.shape_keys, rig.driven_object):
        if id_data.animation_data is not None:
            id_data.animation_data_clear()


def apply_performance(rig: HeadRig, perf: dict, frame_start: int = 1) -> None:
    """Keyframe a performance (from :func:`~tools.synth.performance.make_performance`) on the rig."""
    clear_animation(rig)
    curves = np.asarray(perf["curves"], dtype=np.float32)
    ids = list(perf["curve_ids"])
    key = rig.mesh.data.shape_keys
    for j, sid in enumerate(ids):
        kb = key.key_blocks[rig.names[sid]]
        path = f'key_blocks["{bpy.utils.escape_identifier(kb.name)}"].value'
        _key_channel(kb, key, path, curves[:, j], frame_start)
    rot = np.asarray(perf["head_rotation"], dtype=np.float64)
    tra = np.asarray(perf["head_translation"], dtype=np.float64)
    n = len(rot)
    per_frame = [head_pose_values(rig, rot[f], tra[f]) for f in range(n)]
    rpath, _, lpath, _ = per_frame[0]
    rvals = np.array([pf[1] for pf in per_frame], dtype=np.float64)
    lvals = np.array([pf[3] for pf in per_frame], dtype=np.float64)
    if rig.armature is None:
        owner = rig.mesh
    else:
        owner = rig.armature.pose.bones[rig.bone_name]
        # keep quaternion sign continuous so interpolation never takes the long way
        for f in range(1, n):
            if np.dot(rvals[f], rvals[f - 1]) < 0:
                rvals[f] = -rvals[f]
    _key_channel(owner, rig.driven_object, rpath, rvals, frame_start)
    _key_channel(owner, rig.driven_object, lpath, lvals, frame_start)
    scene = bpy.context.scene
    scene.frame_start = frame_start
    scene.frame_end = frame_start + n - 1


# ----------------------------------------------------------------------------------------- landmarks


def project_points(scene: bpy.types.Scene, points_world: np.ndarray) -> np.ndarray:
    """World points [..., 3] -> image positions [..., 2] in the networks' [-1, 1] convention."""
    cam = scene.camera
    w, h = scene.render.resolution_x, scene.render.resolution_y
    dg = bpy.context.evaluated_depsgraph_get()
    proj = np.array(
        cam.calc_matrix_camera(dg, x=w, y=h, scale_x=scene.render.pixel_aspect_x, scale_y=scene.render.pixel_aspect_y)
    )
    view = np.array(cam.matrix_world.inverted())
    pts = np.asarray(points_world, dtype=np.float64)
    hom = np.concatenate([pts, np.ones(pts.shape[:-1] + (1,))], axis=-1)
    clip = hom @ (proj @ view).T
    ndc = clip[..., :2] / clip[..., 3:4]
    px = (ndc[..., 0] + 1.0) * 0.5 * w - 0.5  # pixel-centre coordinates, 0 = centre of the first pixel
    py = (1.0 - ndc[..., 1]) * 0.5 * h - 0.5
    return np.stack([2.0 * px / (w - 1) - 1.0, 2.0 * py / (h - 1) - 1.0], axis=-1)


def landmark_world(rig: HeadRig) -> np.ndarray:
    """World positions [L, 3] of the landmark vertices in the evaluated (shape-keyed, posed) mesh."""
    dg = bpy.context.evaluated_depsgraph_get()
    ob_eval = rig.mesh.evaluated_get(dg)
    me = ob_eval.to_mesh()
    try:
        co = np.empty(len(me.vertices) * 3, dtype=np.float32)
        me.vertices.foreach_get("co", co)
        co = co.reshape(-1, 3)[rig.landmark_vertices].astype(np.float64)
    finally:
        ob_eval.to_mesh_clear()
    mw = np.array(ob_eval.matrix_world)
    return co @ mw[:3, :3].T + mw[:3, 3]


def landmark_visibility(scene: bpy.types.Scene, points_world: np.ndarray, tolerance: float = 0.01) -> np.ndarray:
    """[L] bool: nothing lies in front of each point seen from the camera (by more than ``tolerance``)."""
    dg = bpy.context.evaluated_depsgraph_get()
    cam = Vector(scene.camera.matrix_world.translation)
    out = np.zeros(len(points_world), dtype=bool)
    for i, p in enumerate(points_world):
        d = Vector(p) - cam
        dist = d.length
        d.normalize()
        hit, loc, *_ = scene.ray_cast(dg, cam, d, distance=dist + 1.0)
        out[i] = (not hit) or ((loc - cam).length > dist - tolerance)
    return out


def landmarks_for_frames(rig: HeadRig, frames: range) -> tuple[np.ndarray, np.ndarray]:
    """(positions float32 [T,L,2] in the networks' convention, visible bool [T,L]) for scene frames."""
    scene = bpy.context.scene
    pos, vis = [], []
    for f in frames:
        scene.frame_set(f)
        world = landmark_world(rig)
        pos.append(project_points(scene, world))
        vis.append(landmark_visibility(scene, world))
    return np.asarray(pos, dtype=np.float32), np.asarray(vis, dtype=bool)


# ----------------------------------------------------------------------------------------- rendering


@contextlib.contextmanager
def quiet_output():
    """Silence Blender's per-frame render chatter (C-level stdout/stderr) for the duration of a block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _read_png(path: str) -> np.ndarray:
    """PNG -> uint8 [H, W, 3] through Blender's image loader (no OpenCV needed)."""
    img = bpy.data.images.load(path, check_existing=False)
    try:
        w, h = img.size
        buf = np.empty(w * h * 4, dtype=np.float32)
        img.pixels.foreach_get(buf)
    finally:
        bpy.data.images.remove(img)
    arr = buf.reshape(h, w, 4)[::-1, :, :3]
    return np.round(arr * 255.0).astype(np.uint8)


def render_frames(
    rig: HeadRig,
    perf: dict,
    *,
    size: int = 128,
    look_seed: int | None = 0,
    frame_start: int = 1,
    aa: str = "5",
    light: str = "STUDIO",
    cancel: Callable[[], bool] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render ``perf`` on ``rig``: (frames uint8 [T,S,S,3], landmarks float32 [T,L,2], look info).

    The look dict also carries ``landmark_visible`` (bool [T,L], see :func:`landmark_visibility`).
    """
    scene = setup_scene(size, int(round(perf.get("fps", 25))), aa=aa, light=light)
    look = apply_look(scene, look_seed) if look_seed is not None else {}
    apply_performance(rig, perf, frame_start)
    n = len(perf["curves"])
    with tempfile.TemporaryDirectory(prefix="synth_frames_") as tmp:
        scene.render.filepath = os.path.join(tmp, "f_####")
        if cancel is None and progress is None:
            with quiet_output():
                bpy.ops.render.render(animation=True)
        else:  # frame by frame so that cancel and progress can act between frames
            for k in range(n):
                if cancel is not None and cancel():
                    raise KeyboardInterrupt("cancelled")
                scene.frame_set(frame_start + k)
                scene.render.filepath = os.path.join(tmp, f"f_{frame_start + k:04d}.png")
                with quiet_output():
                    bpy.ops.render.render(write_still=True)
                if progress is not None:
                    progress(k + 1, n)
        frames = np.stack([_read_png(os.path.join(tmp, f"f_{frame_start + k:04d}.png")) for k in range(n)])
    landmarks, visible = landmarks_for_frames(rig, range(frame_start, frame_start + n))
    scene.frame_set(frame_start)
    return frames, landmarks, {**look, "landmark_visible": visible}


def ground_truth(rig: HeadRig, perf: dict, landmarks: np.ndarray, look: dict, size: int) -> dict:
    """The arrays saved beside each video (``.npz``)."""
    return {
        "curves": np.asarray(perf["curves"], dtype=np.float32),
        "curve_ids": np.array(list(perf["curve_ids"])),
        "shape_key_names": np.array([rig.names[s] for s in perf["curve_ids"]]),
        "head_rotation": np.asarray(perf["head_rotation"], dtype=np.float32),
        "head_translation": np.asarray(perf["head_translation"], dtype=np.float32),
        "fps": np.float32(perf["fps"]),
        "identity": np.array(rig.identity),
        "landmarks": np.asarray(landmarks, dtype=np.float32),
        "landmark_names": np.array(list(rig.landmark_names)),
        "landmark_visible": np.asarray(look.get("landmark_visible", np.ones(np.shape(landmarks)[:2], bool))),
        "image_size": np.int32(size),
        "performance_seed": np.int64(perf.get("seed", -1)),
        "look": np.array(repr({k: v for k, v in look.items() if k != "landmark_visible"})),
    }


def save_ground_truth(path: str | os.PathLike, gt: dict) -> None:
    from ml_core.fileio import atomic_path

    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **gt)


def render_clip(
    rig: HeadRig, perf: dict, out_path: str | os.PathLike, *, size: int = 128, look_seed: int | None = 0, aa: str = "5"
) -> dict:
    """Render to ``out_path`` (.mp4, needs OpenCV) and write the ground truth beside it (same stem, .npz).

    The ground truth is written first and the video last, both atomically: a clip is complete when its
    video exists, so a training loader (which lists videos) never meets a clip without its ground truth,
    even after an interrupted run. Returns the ground-truth dict.
    """
    from .video import write_mp4

    out_path = Path(out_path)
    frames, landmarks, look = render_frames(rig, perf, size=size, look_seed=look_seed, aa=aa)
    gt = ground_truth(rig, perf, landmarks, look, size)
    save_ground_truth(out_path.with_suffix(".npz"), gt)
    write_mp4(out_path, frames, perf["fps"])
    return gt
