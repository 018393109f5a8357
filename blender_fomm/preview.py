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
import numpy as np
from mathutils import Vector

from ml_core.errors import FommError

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
    corners = np.array([obj.matrix_world @ Vector(c) for c in obj.bound_box])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    s = side or float(max(hi[2] - lo[2], hi[0] - lo[0], 1e-3))
    center = (float(hi[0] + 0.6 * s), float((lo[1] + hi[1]) / 2), float((lo[2] + hi[2]) / 2))
    return center, s


def _remove_own(scene: bpy.types.Scene) -> None:
    for obj in [o for o in bpy.data.objects if o.get(PREVIEW_PROP)]:
        mesh = obj.data
        mats = [m for m in mesh.materials if m is not None and m.get(PREVIEW_PROP)]
        bpy.data.objects.remove(obj)
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)
        for m in mats:
            imgs = [n.image for n in m.node_tree.nodes if n.type == "TEX_IMAGE" and n.image is not None]
            if m.users == 0:
                bpy.data.materials.remove(m)
            for img in imgs:
                if img.users == 0 and img.get(PREVIEW_PROP):
                    bpy.data.images.remove(img)


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
    _remove_own(scene)
    img = bpy.data.images.load(str(files[0]), check_existing=False)
    img.name = NAME
    img.source = "SEQUENCE"
    img[PREVIEW_PROP] = True

    mat = bpy.data.materials.new(NAME)
    mat[PREVIEW_PROP] = True
    if bpy.app.version < (5, 0, 0):  # 5.0+ materials always use nodes (the flag is deprecated)
        mat.use_nodes = True
    nt = mat.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = img
    tex.interpolation = "Linear"
    user = tex.image_user
    user.frame_duration = len(files)
    user.frame_start = int(start_frame)
    user.frame_offset = first_number - 1
    user.use_auto_refresh = True
    user.use_cyclic = False
    emit = nt.nodes.new("ShaderNodeEmission")
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(tex.outputs["Color"], emit.inputs["Color"])
    nt.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    tex.location, emit.location, out.location = (-400, 0), (-100, 0), (150, 0)

    center, s = placement_beside(beside, side)
    h = s / 2
    mesh = bpy.data.meshes.new(NAME)
    # a square in X-Z facing -Y (towards the front view), image upright
    mesh.from_pydata([(-h, 0, -h), (h, 0, -h), (h, 0, h), (-h, 0, h)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", [0, 0, 1, 0, 1, 1, 0, 1])
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(NAME, mesh)
    obj[PREVIEW_PROP] = True
    obj.location = center
    scene.collection.objects.link(obj)
    return obj


def preview_texture(obj: bpy.types.Object) -> bpy.types.ShaderNodeTexImage:
    mat = obj.data.materials[0]
    return next(n for n in mat.node_tree.nodes if n.type == "TEX_IMAGE")
