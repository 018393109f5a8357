"""The reference plane: the driving video beside the character, in step with the timeline, to pose examples against.

The plane (object ``FOMM Reference``, marked ``fomm_reference``) shows the clip's video as a movie texture through an
Emission shader, to the left (-X) of the target. Scene frame ``start_frame`` shows the video frame of the clip's
first sample; from there one video frame per scene frame, so the picture and the bake agree frame for frame when the
scene runs at the video's frame rate (the operator says so otherwise). Showing it again replaces this add-on's plane,
material and image; nothing else is touched.
"""

from __future__ import annotations

import os

import bpy
import numpy as np

from ml_core.clip import MotionClip
from ml_core.errors import FommError

from .planes import add_plane, emission_material, remove_marked, world_bounds
from .shapekeys import scene_fps

REFERENCE_PROP = "fomm_reference"
NAME = "FOMM Reference"


def placement_left_of(obj: bpy.types.Object | None) -> tuple[tuple[float, float, float], float]:
    """Centre and side of a square plane to the left (-X) of ``obj``'s bounding box, facing -Y."""
    if obj is None:
        return (-1.5, 0.0, 0.0), 1.0
    lo, hi, s = world_bounds(obj)
    return (float(lo[0] - 0.6 * s), float((lo[1] + hi[1]) / 2), float((lo[2] + hi[2]) / 2)), s


def video_of(clip: MotionClip, fallback: str = "") -> str:
    """The clip's video file (its recorded source, else ``fallback``); FommError if neither exists."""
    for path in (clip.source_path, fallback):
        if path and os.path.isfile(path):
            return path
    raise FommError(
        f"the clip's video {clip.source_path or '(not recorded)'} is not found: pick it as the Video in the "
        "Source panel"
    )


def build_reference_plane(
    scene: bpy.types.Scene, video: str, clip: MotionClip, start_frame: int, beside: bpy.types.Object | None
) -> bpy.types.Object:
    """Make (or remake) the plane playing ``video`` so that scene frame ``start_frame`` shows the clip's first
    sample."""
    try:
        img = bpy.data.images.load(video, check_existing=False)
    except RuntimeError:
        raise FommError(f"Blender cannot play the video {video}: convert it to an .mp4 (H.264)") from None
    remove_marked(REFERENCE_PROP)
    img.name = NAME
    img[REFERENCE_PROP] = True
    img.source = "MOVIE"
    mat, tex = emission_material(NAME, REFERENCE_PROP, img)
    user = tex.image_user
    user.frame_duration = max(1, int(img.frame_duration) - int(clip.frame_indices[0]))
    user.frame_start = int(start_frame)
    user.frame_offset = int(clip.frame_indices[0])
    user.use_auto_refresh = True

    center, s = placement_left_of(beside)
    w, h = img.size[:] if img.size[0] and img.size[1] else (1, 1)
    return add_plane(scene, NAME, REFERENCE_PROP, mat, center, (s / 2) * min(1.0, w / h), (s / 2) * min(1.0, h / w))


def show_reference(scene: bpy.types.Scene, clip: MotionClip) -> str:
    s = scene.fomm
    video = video_of(clip, bpy.path.abspath(s.video_path) if s.video_path else "")
    plane = build_reference_plane(scene, video, clip, int(s.start_frame), s.target_object)
    line = f"reference video on '{plane.name}' from frame {s.start_frame}"
    step = np.diff(clip.frame_indices)
    if abs(scene_fps(scene) - clip.fps) > 1e-3 or (len(step) and np.any(step != 1)):
        line += (
            f"; it plays one video frame per scene frame: set the scene to {clip.fps:g} fps and extract every "
            "frame for it to stay in step with the bake"
        )
    return line


def reference_texture(obj: bpy.types.Object) -> bpy.types.ShaderNodeTexImage:
    return next(n for n in obj.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE")
