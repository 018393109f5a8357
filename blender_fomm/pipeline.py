"""What each operator does, as (worker job, finish) pairs the operators run synchronously or modally.

A :class:`Step` is prepared on the main thread from ``scene.fomm`` (validating every input and raising
:class:`FommError` with one line before anything changes), optionally runs a worker job, and finishes on
the main thread with the job's result (the only place that writes scene data). A cancelled or failed
job never reaches ``finish``, so the scene stays as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import bpy
import numpy as np

from ml_core.clip import MotionClip, load_clip
from ml_core.errors import FommError
from ml_core.headpose import (
    HeadPose,
    estimate_head_pose,
    model_head_calibration,
    resample_control_tracks,
    resample_head_pose,
)
from ml_core.jobs import AnimateJob, AnimateOptions, DetectImagesJob, ExtractJob, ExtractOptions, ProbeJob
from ml_core.retarget import (
    SolveOptions,
    manual_weights,
    smooth_weights,
    solve_weights,
)

from . import bones, calibration, export, preview, shapekeys
from .prefs import WorkerSettings, worker_settings


@dataclass
class Step:
    """A worker ``job`` (None: nothing to run) and the main-thread ``finish(result) -> report line``.

    ``job`` is an :mod:`ml_core.jobs` dataclass as its JSON object (``Job.to_dict()``): checked when it was made."""

    job: dict | None
    finish: Callable[[dict | None], str]
    title: str = ""


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def _abspath(path: str) -> str:
    return os.path.normpath(bpy.path.abspath(path)) if path else ""


_CLIPS: dict[tuple[str, int, int], MotionClip] = {}


def read_clip(path: str) -> MotionClip:
    """The motion clip at ``path`` (blend-relative allowed), cached while the file is unchanged."""
    full = _abspath(path)
    if not full:
        raise FommError("no motion clip: extract one from a video, or pick a clip file in the Source panel")
    if not os.path.isfile(full):
        raise FommError(f"motion clip not found: {full}")
    st = os.stat(full)
    key = (full, st.st_size, st.st_mtime_ns)
    clip = _CLIPS.get(key)
    if clip is None:
        clip = load_clip(full)
        _CLIPS.clear()
        _CLIPS[key] = clip
    return clip


def selected_keys(settings, obj) -> list[str]:
    """The ticked shape keys (all of the object's, when the list was never filled)."""
    available = shapekeys.bakeable_keys(obj)
    if len(settings.keys) == 0:
        return available
    return [k.name for k in settings.keys if k.use]


def sync_key_list(settings, obj) -> None:
    """Fill ``settings.keys`` with the object's shape keys, keeping the ticks of names already listed."""
    ticks = {k.name: k.use for k in settings.keys}
    settings.keys.clear()
    for name in shapekeys.bakeable_keys(obj):
        item = settings.keys.add()
        item.name = name
        item.use = ticks.get(name, True)


def _clip_id(path: str) -> str:
    st = os.stat(path)
    return hashlib.sha256(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Extract
# --------------------------------------------------------------------------------------------------


def extract_options(s) -> ExtractOptions:
    if s.crop_mode == "BOX":
        if s.crop_size <= 0:
            raise FommError("the crop box needs a size above 0 pixels")
        crop: str | list[int] = [s.crop_x, s.crop_y, s.crop_size]
    else:
        crop = s.crop_mode.lower()
    if s.video_end and s.video_end < s.video_start:
        raise FommError(f"the video's end frame {s.video_end} is before its start frame {s.video_start}")
    return ExtractOptions(
        crop=crop,
        start=s.video_start or None,
        end=(s.video_end + 1) if s.video_end else None,
        step=s.video_step,
        reference_frame="auto" if s.reference_mode == "AUTO" else int(s.reference_frame),
        smooth=None if s.smoothing == "NONE" else {},
    )


def extract_step(scene, ws: WorkerSettings | None = None) -> Step:
    s = scene.fomm
    ws = ws or worker_settings()
    video = _abspath(s.video_path)
    if not video:
        raise FommError("no video: pick the driving video in the Source panel")
    if not os.path.isfile(video):
        raise FommError(f"video not found: {video}")
    opts = extract_options(s)
    st = os.stat(video)
    ident = json.dumps([video, st.st_size, st.st_mtime_ns, asdict(opts), ws.model_identity()], sort_keys=True)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    out = ws.cache_dir / "clips" / f"{Path(video).stem}-{digest}.npz"
    job = ExtractJob(video=video, output=str(out), **ws.model_keys(), options=opts).to_dict()
    scene_name = scene.name

    def finish(result: dict | None) -> str:
        assert result is not None
        sc = bpy.data.scenes.get(scene_name) or bpy.context.scene
        sc.fomm.clip_path = result["clip"]
        return (
            f"extracted {result['frames']} frames at {result['fps']:.2f} fps, {result['num_kp']} keypoints "
            f"(reference frame {result['reference_frame']})"
        )

    return Step(job, finish, "Extracting motion")


# --------------------------------------------------------------------------------------------------
# Calibration + shape keys
# --------------------------------------------------------------------------------------------------


@dataclass
class CalibrationPlan:
    obj_name: str
    names: list[str]
    view: calibration.View
    size: int
    key: str
    folder: Path


def plan_calibration(scene, ws: WorkerSettings) -> CalibrationPlan:
    s = scene.fomm
    obj = s.target_object
    names = selected_keys(s, obj)
    shapekeys.target_key(obj, names)
    view = calibration.view_for(obj, names, s.camera_object)
    size = int(s.calibration_size)
    key = calibration.calibration_key(obj, names, view, size, ws.model_identity())
    return CalibrationPlan(obj.name, names, view, size, key, calibration.cache_dir_for(ws.cache_dir, key))


def calibration_job(plan: CalibrationPlan, ws: WorkerSettings) -> dict:
    """Render now (main thread) and return the detector job for the renders."""
    obj = bpy.data.objects[plan.obj_name]
    images = calibration.render_calibration(obj, plan.names, plan.view, plan.folder / "renders", plan.size)
    out = plan.folder / calibration.DETECTIONS_FILE
    return DetectImagesJob(images=[str(p) for p in images], output=str(out), **ws.model_keys()).to_dict()


def finish_calibration(plan: CalibrationPlan, result: dict | None):
    """Build and save the calibration from the worker's detections (no scene data changes)."""
    assert result is not None
    meta = {
        "object": plan.obj_name,
        "keys": plan.names,
        "render_size": plan.size,
        "camera": json.loads(plan.view.signature()),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return calibration.calibration_from_detections(
        result["output"], plan.names, meta, plan.folder / calibration.CALIBRATION_FILE
    )


def calibrate_step(scene, ws: WorkerSettings | None = None) -> Step:
    ws = ws or worker_settings()
    plan = plan_calibration(scene, ws)
    job = calibration_job(plan, ws)
    scene_name = scene.name

    def finish(result):
        sc = bpy.data.scenes[scene_name]
        calib = finish_calibration(plan, result)
        sc.fomm.calibration_path = str(plan.folder / calibration.CALIBRATION_FILE)
        weak = calib.weak_keys()
        note = f"; no visible effect: {', '.join(weak)}" if weak else ""
        return f"calibrated {len(plan.names)} shape keys on '{plan.obj_name}'{note}"

    return Step(job, finish, "Calibrating")


def _same_model(calib, clip: MotionClip) -> bool:
    made_by = calib.meta.get("checkpoint_hash")
    return calib.num_kp == clip.num_kp and not (made_by and clip.checkpoint_hash and made_by != clip.checkpoint_hash)


def _check_same_model(calib, clip: MotionClip, *, stale_ok: bool = False) -> None:
    """FommError if the clip cannot be baked with this calibration's model. ``stale_ok``: a different
    checkpoint with the same keypoint count passes (a cached calibration is then made again)."""
    if calib.num_kp != clip.num_kp:
        raise FommError(
            f"the clip has {clip.num_kp} keypoints but the calibration {calib.num_kp}: "
            "extract the clip with the model set in the preferences"
        )
    made_by = calib.meta.get("checkpoint_hash")
    if not stale_ok and made_by and clip.checkpoint_hash and made_by != clip.checkpoint_hash:
        raise FommError(
            "the clip was extracted with another model than the one in the preferences: "
            "extract it again, or point the preferences at that model"
        )


# The Bake panel's solve settings: scene.fomm properties named like the SolveOptions fields (use_poses is not shown)
PANEL_SOLVE_SETTINGS = tuple(f.name for f in fields(SolveOptions) if f.name != "use_poses")


def solve_options(s) -> SolveOptions:
    """The solve's settings from the Bake panel (``scene.fomm``)."""
    return SolveOptions(**{name: getattr(s, name) for name in PANEL_SOLVE_SETTINGS})


def set_solve_options(s, options: SolveOptions) -> None:
    """Set the Bake panel's solve settings (``scene.fomm``) from ``options`` (scripts: the demo, benchmarks)."""
    for name in PANEL_SOLVE_SETTINGS:
        setattr(s, name, getattr(options, name))


def bake_shape_keys_with(scene, calib, clip: MotionClip) -> str:
    s = scene.fomm
    obj = s.target_object
    names = selected_keys(s, obj)
    shapekeys.target_key(obj, names)
    _check_same_model(calib, clip)
    res = solve_weights(
        calib,
        clip.values,
        clip.jacobians if clip.has_jacobians else None,
        clip.reference_frame,
        keys=names,
        options=solve_options(s),
    )
    frames, w = shapekeys.clip_to_frames(clip.times, res.weights, scene, s.start_frame)
    report = shapekeys.bake_weights(obj, names, frames, w, placement=s.placement, tolerance=s.tolerance)
    return _one_take(scene, _bake_line(f"{len(names)} shape keys", len(frames), report))


def _one_take(scene, line: str) -> str:
    """Join the shape-key and head-bone bakes into one action (one glTF animation / FBX take) when asked."""
    s = scene.fomm
    if s.one_take and s.placement == "ACTIVE":
        take = export.join_take(scene)
        if take is not None:
            return f"{line}; joined with the other bake into the take '{take.name}'"
    return line


def _bake_line(what: str, n_frames: int, report) -> str:
    return (
        f"baked {what} over {n_frames} frames into '{report.action}': "
        f"{report.keys_before:,} keys, {report.keys_after:,} after reduction"
    )


def bake_manual(scene, clip: MotionClip) -> str:
    s = scene.fomm
    obj = s.target_object
    if len(s.mappings) == 0:
        raise FommError("no manual mappings: add one (keypoint, axis, shape key, gain) in the Bake panel")
    names = [m.shape_key for m in s.mappings]
    if len(set(names)) != len(names):
        raise FommError("each shape key can have only one manual mapping")
    shapekeys.target_key(obj, names)
    mapping = [(m.keypoint, 0 if m.axis == "X" else 1, m.gain) for m in s.mappings]
    w = manual_weights(clip.values, clip.reference_frame, mapping, remove_head=s.remove_head)
    w = smooth_weights(w, s.smooth_sigma)
    frames, w = shapekeys.clip_to_frames(clip.times, w, scene, s.start_frame)
    report = shapekeys.bake_weights(obj, names, frames, w, placement=s.placement, tolerance=s.tolerance)
    return _one_take(scene, _bake_line(f"{len(names)} shape keys (manual)", len(frames), report))


def bake_shape_keys_step(scene, ws: WorkerSettings | None = None) -> Step:
    s = scene.fomm
    clip = read_clip(s.clip_path)
    scene_name = scene.name
    if s.method == "MANUAL":
        shapekeys.target_key(s.target_object)
        return Step(None, lambda _r: bake_manual(bpy.data.scenes[scene_name], clip), "Baking shape keys")
    ws = ws or worker_settings()
    plan = plan_calibration(scene, ws)
    calib = calibration.cached(ws.cache_dir, plan.key)
    if calib is not None:
        _check_same_model(calib, clip, stale_ok=True)
    path = str(plan.folder / calibration.CALIBRATION_FILE)

    def bake(calib_used) -> str:
        sc = bpy.data.scenes[scene_name]
        line = bake_shape_keys_with(sc, calib_used, clip)
        sc.fomm.calibration_path = path
        return line

    if calib is not None and _same_model(calib, clip):
        return Step(None, lambda _r: bake(calib), "Baking shape keys")
    # no calibration yet, or one made by an earlier version of the model: calibrate first
    job = calibration_job(plan, ws)
    return Step(job, lambda r: bake(finish_calibration(plan, r)), "Calibrating, then baking")


# --------------------------------------------------------------------------------------------------
# Bones
# --------------------------------------------------------------------------------------------------


def bake_bones_step(scene, ws: WorkerSettings | None = None) -> Step:
    s = scene.fomm
    clip = read_clip(s.clip_path)
    scene_name = scene.name
    if s.bone_mode == "HEAD":
        arm = s.armature_object
        if arm is None:
            raise FommError("no armature: pick the character's armature in the Target panel")
        if not s.head_bone or arm.pose.bones.get(s.head_bone) is None:
            raise FommError(f"pick the head bone of '{arm.name}' in the Target panel")
        if shapekeys.bakeable_keys(s.target_object):
            # the target's calibration (its turned and nodded renders) measures the head's yaw and pitch
            ws = ws or worker_settings()
            plan = plan_calibration(scene, ws)
            calib = calibration.cached(ws.cache_dir, plan.key)
            if calib is not None:
                _check_same_model(calib, clip, stale_ok=True)
            if calib is None or not _same_model(calib, clip):
                job = calibration_job(plan, ws)
                return Step(
                    job,
                    lambda r: bake_bones(bpy.data.scenes[scene_name], clip, finish_calibration(plan, r)),
                    "Calibrating, then baking the head bone",
                )
            return Step(None, lambda _r: bake_bones(bpy.data.scenes[scene_name], clip, calib), "Baking bones")
    return Step(None, lambda _r: bake_bones(bpy.data.scenes[scene_name], clip), "Baking bones")


def head_pose_for(clip: MotionClip, calib=None) -> HeadPose:
    """The clip's head pose (:func:`ml_core.headpose.estimate_head_pose`): through the target's calibration
    when given, else the model's own head-pose calibration, else the in-plane roll alone."""
    source = "calibration"
    if calib is None:
        calib, source = model_head_calibration(clip.checkpoint_hash), "model"
    jac = clip.jacobians if clip.has_jacobians else None
    return estimate_head_pose(clip.values, jac, clip.reference_frame, calib, source=source)


def bake_bones(scene, clip: MotionClip, calib=None) -> str:
    s = scene.fomm
    jac = clip.jacobians if clip.has_jacobians else None
    fps = shapekeys.scene_fps(scene)
    if s.bone_mode == "HEAD":
        frames, head = resample_head_pose(head_pose_for(clip, calib), clip.times, fps, s.start_frame)
        report = bones.bake_head_bone(
            s.armature_object,
            s.head_bone,
            frames,
            head,
            camera=s.camera_object,
            units=s.head_units,
            use_translation=s.head_translation,
            use_scale=s.head_scale,
            placement=s.placement,
            tolerance=s.bone_tolerance,
        )
        how = (
            f"3-D rotation: {head.source}"
            if head.source != "in-plane"
            else "in-plane tilt only: no head-pose calibration for this model"
        )
        line = _bake_line(f"head bone '{s.head_bone}' ({how})", len(frames), report)
        return _one_take(scene, line)
    disp, angle, stretch = bones.control_tracks(clip.values, jac, clip.reference_frame)
    frames, disp_f, angle_f, stretch_f = resample_control_tracks(disp, angle, stretch, clip.times, fps, s.start_frame)
    m, k = len(frames), disp.shape[1]
    plane = bones.plane_for(s.target_object)
    arm = bones.ensure_control_armature(scene, clip.reference_values, plane)
    report = bones.bake_control_bones(
        arm,
        frames,
        disp_f,
        angle_f,
        stretch_f,
        plane.half_size,
        placement=s.placement,
        tolerance=s.bone_tolerance,
    )
    return _bake_line(f"{k} control bones", m, report)


# --------------------------------------------------------------------------------------------------
# Neural preview
# --------------------------------------------------------------------------------------------------


def resampled_clip(clip: MotionClip, scene, path: Path) -> int:
    """Save ``clip`` resampled to one sample per scene frame (so preview frames match baked frames)."""
    fps = shapekeys.scene_fps(scene)
    t = clip.times
    packed = np.concatenate([clip.values.reshape(len(t), -1), clip.jacobians.reshape(len(t), -1)], axis=1)
    frames, vals = shapekeys.clip_to_frames(t, packed, scene, 0)
    m, k = len(frames), clip.num_kp
    ref_time = t[clip.reference_frame] - t[0]
    out = replace(  # every other field (model hashes, crop, smoothing, ...) carries over as it is
        clip,
        values=vals[:, : 2 * k].reshape(m, k, 2),
        jacobians=vals[:, 2 * k :].reshape(m, k, 2, 2)
        if clip.has_jacobians
        else np.broadcast_to(np.eye(2, dtype=np.float32), (m, k, 2, 2)),
        fps=fps,
        frame_indices=np.arange(m),
        sample_times=None,  # one sample per scene frame: the times follow from the frame numbers and fps
        reference_frame=int(min(m - 1, round(ref_time * fps))),
        notes=(*clip.notes, f"resampled to {fps:g} fps for the preview"),
    )
    out.save(path)
    return m


def neural_preview_step(scene, ws: WorkerSettings | None = None) -> Step:
    s = scene.fomm
    ws = ws or worker_settings()
    clip_path = _abspath(s.clip_path)
    clip = read_clip(s.clip_path)
    obj = s.target_object
    if s.preview_source == "IMAGE":
        source = _abspath(s.preview_image)
        if not source or not os.path.isfile(source):
            raise FommError(f"preview image not found: {source or '(none)'}: pick one in the Preview panel")
    elif obj is None:
        raise FommError("no target object to render as the preview's source: pick one, or use an image")
    ident = json.dumps(
        [
            _clip_id(clip_path),
            shapekeys.scene_fps(scene),
            s.preview_source,
            s.preview_mode,
            ws.model_identity(),
        ]
    )
    folder = ws.cache_dir / "preview" / hashlib.sha256(ident.encode()).hexdigest()[:16]
    calibration.cache_folder(folder)
    if s.preview_source == "RENDER":
        view = calibration.view_for(obj, shapekeys.bakeable_keys(obj), s.camera_object)
        source = str(calibration.render_neutral(obj, view, folder / "source.png", 256))
    driving = folder / "driving.npz"
    resampled_clip(clip, scene, driving)
    out = folder / "frames"
    job = AnimateJob(
        source=source,
        clip=str(driving),
        output=str(out) + os.sep,
        **ws.model_keys(),
        options=AnimateOptions(mode=s.preview_mode),
    ).to_dict()
    scene_name = scene.name
    obj_name = obj.name if obj is not None else None
    start = s.start_frame

    def finish(result):
        sc = bpy.data.scenes[scene_name]
        beside = bpy.data.objects.get(obj_name) if obj_name else None
        plane = preview.build_preview_plane(sc, Path(result["output"]), start, beside)
        n = len(preview.sequence_files(Path(result["output"])))
        return f"neural preview: {n} frames on '{plane.name}' from frame {start}"

    return Step(job, finish, "Rendering the neural preview")


# --------------------------------------------------------------------------------------------------
# Worker check
# --------------------------------------------------------------------------------------------------


def check_worker_step() -> Step:
    def finish(result):
        assert result is not None
        if not result.get("torch"):
            where = result.get("executable") or f"Python {result.get('python')}"
            raise FommError(
                f"the worker Python {where} has ml_core but no torch: install torch into it, or use the full build"
            )
        return (
            f"worker OK: Python {result['python']}, ml_core {result['ml_core']}, torch {result['torch']}, "
            f"devices {', '.join(result['devices'])}"
        )

    return Step(ProbeJob().to_dict(), finish, "Checking the worker")
