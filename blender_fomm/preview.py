"""The neural preview plane: the worker's frame sequence on an image-textured plane beside the character.

The plane (object ``FOMM Preview``, marked with the custom property ``fomm_preview``) carries a material
with an Image Texture (the PNG sequence, one image per scene frame from the bake's start frame) into an
Emission shader, so it shows the frames as they are whatever the lighting. Running the preview again
replaces this add-on's plane, material and image; nothing else is touched.
"""

from __future__ import annotations

import re
from pathlib import Path

import bpy

from ml_core.errors import FommError

from .planes import add_plane, emission_material, remove_marked, world_bounds

PREVIEW_PROP = "fomm_preview"
NAME = "FOMM Preview"
_NUMBER = re.compile(r"(\d+)(?=\.[A-Za-z0-9]+$)")


def sequence_files(folder: Path) -> list[Path]:
    """The numbered images of a frame sequence, in frame order."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and _NUMBER.search(p.name)]
    files.sort(key=lambda p: int(_NUMBER.search(p.name).group(1)))
    if not files:
        raise FommError(f"no numbered frames in {folder}: render the preview again")
    return files


def placement_beside(obj: bpy.types.Object | None, side: float | None = None) -> tuple[tuple, float]:
    """Centre and side of a square plane to the right (+X) of ``obj``'s bounding box, facing -Y."""
    if obj is None:
        s = side or 1.0
        return (1.5 * s, 0.0, 0.0), s
    lo, hi, size = world_bounds(obj)
    s = side or size
    center = (float(hi[0] + 0.6 * s), float((lo[1] + hi[1]) / 2), float((lo[2] + hi[2]) / 2))
    return center, s


def build_preview_plane(
    scene: bpy.types.Scene,
    frames_dir: Path,
    start_frame: int,
    beside: bpy.types.Object | None = None,
    side: float | None = None,
) -> bpy.types.Object:
    """Make (or remake) the preview plane showing the sequence in ``frames_dir`` from ``start_frame``."""
    files = sequence_files(frames_dir)
    first_number = int(_NUMBER.search(files[0].name).group(1))
    remove_marked(PREVIEW_PROP)
    img = bpy.data.images.load(str(files[0]), check_existing=False)
    img.name = NAME
    img.source = "SEQUENCE"
    img[PREVIEW_PROP] = True

    mat, tex = emission_material(NAME, PREVIEW_PROP, img)
    tex.interpolation = "Linear"
    user = tex.image_user
    user.frame_duration = len(files)
    user.frame_start = int(start_frame)
    user.frame_offset = first_number - 1
    user.use_auto_refresh = True
    user.use_cyclic = False

    center, s = placement_beside(beside, side)
    return add_plane(scene, NAME, PREVIEW_PROP, mat, center, s / 2, s / 2)


def preview_texture(obj: bpy.types.Object) -> bpy.types.ShaderNodeTexImage:
    mat = obj.data.materials[0]
    return next(n for n in mat.node_tree.nodes if n.type == "TEX_IMAGE")
