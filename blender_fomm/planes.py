"""Image planes beside the character: the neural preview's and the reference video's (see :mod:`.preview`,
:mod:`.reference`).

A plane is an object, its mesh (a rectangle in X-Z facing -Y, the front view, image upright), an Emission material
showing an Image Texture (so it shows the picture as it is whatever the lighting), and the image. All four are marked
with the caller's custom property, so that showing a plane again removes only what this add-on made.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Vector


def remove_marked(prop: str) -> None:
    """Remove the objects marked ``prop``, and their meshes, ``prop``-marked materials and images once unused."""
    for obj in [o for o in bpy.data.objects if o.get(prop)]:
        mesh = obj.data
        mats = [m for m in mesh.materials if m is not None and m.get(prop)]
        bpy.data.objects.remove(obj)
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)
        for m in mats:
            imgs = [n.image for n in m.node_tree.nodes if n.type == "TEX_IMAGE" and n.image is not None]
            if m.users == 0:
                bpy.data.materials.remove(m)
            for img in imgs:
                if img.users == 0 and img.get(prop):
                    bpy.data.images.remove(img)


def world_bounds(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray, float]:
    """World-space bounding box of ``obj`` (lowest and highest corner) and its size: the larger of its height and
    width (at least 1e-3)."""
    corners = np.array([obj.matrix_world @ Vector(c) for c in obj.bound_box])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return lo, hi, float(max(hi[2] - lo[2], hi[0] - lo[0], 1e-3))


def emission_material(
    name: str, prop: str, image: bpy.types.Image
) -> tuple[bpy.types.Material, bpy.types.ShaderNodeTexImage]:
    """A new material ``name`` marked ``prop``: ``image`` through an Image Texture into an Emission shader. Returns
    the material and its texture node (whose ``image_user`` the caller sets)."""
    mat = bpy.data.materials.new(name)
    mat[prop] = True
    if bpy.app.version < (5, 0, 0):  # 5.0+ materials always use nodes (the flag is deprecated)
        mat.use_nodes = True
    nt = mat.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = image
    emit = nt.nodes.new("ShaderNodeEmission")
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(tex.outputs["Color"], emit.inputs["Color"])
    nt.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    tex.location, emit.location, out.location = (-400, 0), (-100, 0), (150, 0)
    return mat, tex


def add_plane(
    scene: bpy.types.Scene,
    name: str,
    prop: str,
    material: bpy.types.Material,
    center: tuple[float, float, float],
    half_width: float,
    half_height: float,
) -> bpy.types.Object:
    """A new object ``name`` marked ``prop`` in ``scene``'s collection at ``center``: a rectangle in X-Z facing -Y
    (towards the front view, image upright), UV-mapped to the whole image, with ``material``."""
    hx, hz = half_width, half_height
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-hx, 0, -hz), (hx, 0, -hz), (hx, 0, hz), (-hx, 0, hz)], [], [(0, 1, 2, 3)])
    mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", [0, 0, 1, 0, 1, 1, 0, 1])
    mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    obj[prop] = True
    obj.location = center
    scene.collection.objects.link(obj)
    return obj
